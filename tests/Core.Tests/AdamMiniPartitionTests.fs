module internal BlockwiseLR.Core.Tests.AdamMiniPartitionTests

open Expecto
open FsCheck
open FsCheck.FSharp
open BlockwiseLR
open BlockwiseLR.Core
open BlockwiseLR.Core.Tests.Generators

let plans (m: ModelShape) (expected: Expected list) =
    Taxonomy.partition BlockRule.defaults (infos expected)
    |> Result.defaultWith failwith
    |> List.map (AdamMiniPartition.plan m.Attention >> Result.defaultWith failwith)

/// The segments tile [0, numel) in order, each coordinate exactly once.
let tiles (plan: AdamMiniPlan) =
    let ends =
        plan.Segments
        |> List.scan
            (fun offset s ->
                if s.Offset = offset then
                    offset + s.Blocks * s.BlockSize
                else
                    -1L)
            0L

    List.last ends = Taxonomy.numel plan.Shape
    && ends |> List.forall (fun e -> e >= 0L)

let byName (ps: AdamMiniPlan list) =
    ps |> List.map (fun p -> p.Name, p) |> Map.ofList

[<Tests>]
let tests =
    testList
        "AdamMiniPartition"
        [
            testPropertyWithConfig config "v-blocks cover every tensor exactly once (LLaMA, GPT-2, nanoGPT fused)"
            <| Prop.forAll (Arb.fromGen modelShape) (fun m ->
                [ llama m; gpt2Ours m; gpt2NanoGpt m ]
                |> List.forall (fun model -> plans m model |> List.forall tiles))

            testPropertyWithConfig
                config
                "Q has one v per head, K one per KV head (GQA); V, O, FFN, embedding and head one per row"
            <| Prop.forAll (Arb.fromGen modelShape) (fun m ->
                let p = byName (plans m (llama m))
                let count name = AdamMiniPartition.vCount p[name]
                let l = "model.layers.0."

                count (l + "self_attn.q_proj.weight") = int64 m.Heads
                && count (l + "self_attn.k_proj.weight") = int64 m.KvHeads
                && count (l + "self_attn.v_proj.weight") = int64 (m.KvHeads * m.HeadDim)
                && count (l + "self_attn.o_proj.weight") = int64 m.Width
                && count (l + "mlp.gate_proj.weight") = int64 m.FeedForward
                && count (l + "mlp.down_proj.weight") = int64 m.Width
                && count "model.embed_tokens.weight" = int64 m.Vocab
                && count "lm_head.weight" = int64 m.Vocab
                && count (l + "input_layernorm.weight") = 1L
                && count "model.norm.weight" = 1L)

            testPropertyWithConfig
                config
                "biases are per coordinate; the position embedding per row; no decay on norms and biases"
            <| Prop.forAll (Arb.fromGen modelShape) (fun m ->
                let m = { m with Bias = true }
                let p = byName (plans m (gpt2Ours m))
                let h = "transformer.h.0."

                AdamMiniPartition.vCount p[h + "attn.q_proj.bias"] = int64 m.Width
                && AdamMiniPartition.vCount p["transformer.wpe.weight"] = int64 m.Context
                && AdamMiniPartition.vCount p[h + "attn.q_proj.weight"] = int64 m.Heads
                && not p[h + "ln_1.weight"].WeightDecay
                && not p[h + "mlp.c_fc.bias"].WeightDecay
                && p[h + "mlp.c_fc.weight"].WeightDecay
                && p["transformer.wte.weight"].WeightDecay)

            testPropertyWithConfig config "a fused Linear c_attn gets per-head v for Q and K and per-row v for V"
            <| Prop.forAll (Arb.fromGen modelShape) (fun m ->
                let p = byName (plans m (gpt2NanoGpt m))
                let segments = p["transformer.h.0.attn.c_attn.weight"].Segments

                segments |> List.map (fun s -> s.Granularity, s.Blocks) =
                    [ PerHead, int64 m.Heads; PerHead, int64 m.Heads; PerRow, int64 m.Width ])

            testPropertyWithConfig
                config
                "laid end to end and merged, the segments still tile the buffer and keep every v"
            <| Prop.forAll (Arb.fromGen modelShape) (fun m ->
                [ llama m; gpt2Ours m; gpt2NanoGpt m ]
                |> List.forall (fun model ->
                    let ps = plans m model
                    let merged = AdamMiniPartition.concat ps
                    let total = ps |> List.sumBy (fun p -> Taxonomy.numel p.Shape)

                    let whole =
                        {
                            Name = "all"
                            Shape = [ total ]
                            Segments = merged
                            WeightDecay = true
                        }

                    tiles whole
                    && (merged |> List.sumBy (fun s -> s.Blocks)) = (ps |> List.sumBy AdamMiniPartition.vCount)
                    && merged.Length <= (ps |> List.sumBy (fun p -> p.Segments.Length))
                    && merged
                       |> List.pairwise
                       |> List.forall (fun (a, b) -> a.BlockSize <> b.BlockSize)))

            test
                "the optimizer fixture's shapes: q_proj 4 head blocks of 1024, k_proj 2 (Adam-mini 1.1.1, dim 64, 4 \
                 heads, 2 KV heads)" {
                let golden = Safetensors.read (Safetensors.dataPath "optim-golden.safetensors")

                let parameters =
                    golden
                    |> Map.toList
                    |> List.filter (fun (k, _) -> k.StartsWith "init/")
                    |> List.map (fun (k, t) ->
                        {
                            Name = k.Substring 5
                            Shape = t.Shape
                        })

                let attention = { Width = 64; Heads = 4; KvHeads = 2 }

                let p =
                    Taxonomy.partition BlockRule.defaults parameters
                    |> Result.defaultWith failwith
                    |> List.map (AdamMiniPartition.plan attention >> Result.defaultWith failwith)
                    |> byName

                let seg name =
                    p[name].Segments |> List.map (fun s -> s.Blocks, s.BlockSize)

                Expect.equal (seg "model.layers.0.self_attn.q_proj.weight") [ 4L, 1024L ] "q per head"
                Expect.equal (seg "model.layers.0.self_attn.k_proj.weight") [ 2L, 1024L ] "k per KV head"
                Expect.equal (seg "model.layers.0.self_attn.v_proj.weight") [ 32L, 64L ] "v per row"
                Expect.equal (seg "model.norm.weight") [ 1L, 64L ] "norm per tensor"
                Expect.isFalse p["model.layers.0.input_layernorm.weight"].WeightDecay "no decay on norms"
                Expect.isTrue p["lm_head.weight"].WeightDecay "decay on the head"
            }

            test "a Conv1D fused c_attn is refused with a reason (Adam-mini wants the Linear layout)" {
                let m =
                    {
                        Layers = 1
                        Heads = 2
                        KvHeads = 2
                        HeadDim = 4
                        FeedForward = 8
                        Vocab = 10
                        Context = 4
                        Tied = true
                        Bias = true
                    }

                let placed =
                    Taxonomy.partition BlockRule.defaults (infos (gpt2Hf m))
                    |> Result.defaultWith failwith

                let cAttn = placed |> List.find (fun p -> p.Parameter.Name.EndsWith "c_attn.weight")
                Expect.isError (AdamMiniPartition.plan m.Attention cAttn) "Conv1D layout"
            }

            test "attention shapes are validated" {
                Expect.isError
                    (AdamMiniPartition.validateAttention { Width = 10; Heads = 3; KvHeads = 1 })
                    "width % heads"

                Expect.isError (AdamMiniPartition.validateAttention { Width = 12; Heads = 4; KvHeads = 3 }) "heads % kv"
                Expect.isOk (AdamMiniPartition.validateAttention { Width = 12; Heads = 4; KvHeads = 2 }) "valid"
            }

            test "weight-decay policies: all, matrices only (nanoGPT), Adam-mini names" {
                let applies policy name shape = WeightDecay.applies policy name shape

                Expect.isTrue
                    (applies WeightDecayPolicy.AllParameters "model.norm.weight" [ 8L ])
                    "paper: every parameter"

                Expect.isFalse (applies WeightDecayPolicy.MatricesOnly "model.norm.weight" [ 8L ]) "nanoGPT: no 1-D"
                Expect.isTrue (applies WeightDecayPolicy.MatricesOnly "wte.weight" [ 8L; 4L ]) "nanoGPT: matrices"
                Expect.isFalse (applies WeightDecayPolicy.AdamMiniNames "h.0.ln_1.weight" [ 8L ]) "Adam-mini: ln"

                Expect.equal
                    (Names.parse "policy" Names.weightDecayPolicies "Matrices")
                    (Ok WeightDecayPolicy.MatricesOnly)
                    "parse"

                Expect.isError (Names.parse "policy" Names.weightDecayPolicies "some") "unknown policy"
            }
        ]
