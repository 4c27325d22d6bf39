module internal BlockwiseLR.Core.Tests.TaxonomyTests

open Expecto
open FsCheck
open FsCheck.FSharp
open BlockwiseLR
open BlockwiseLR.Core
open BlockwiseLR.Core.Tests.Generators

/// Partitions with the built-in rules and compares every placement with the generator's oracle.
let placesAsBuilt (expected: Expected list) =
    match Taxonomy.partition BlockRule.defaults (infos expected) with
    | Error e -> failwithf "partition failed: %s" e
    | Ok placed ->
        let got = placed |> List.map (fun p -> p.Parameter.Name, p.Placement)
        let want = expected |> List.map (fun (name, _, placement) -> name, placement)
        got = want

let numelTotal (expected: Expected list) =
    expected |> List.sumBy (fun (_, shape, _) -> Taxonomy.numel shape)

let countsAddUp (expected: Expected list) =
    match Taxonomy.partition BlockRule.defaults (infos expected) with
    | Ok placed -> (Taxonomy.countsByBlock placed |> List.sumBy snd) = numelTotal expected
    | Error _ -> false

let shapes = Arb.fromGen modelShape

let biasFollowsWeight (expected: Expected list) =
    let placed =
        Taxonomy.partition BlockRule.defaults (infos expected)
        |> Result.defaultWith failwith
        |> List.map (fun p -> p.Parameter.Name, p.Placement)
        |> Map.ofList

    let blocks placement =
        match placement with
        | WholeTensor kind -> [ kind ]
        | Slices(_, parts) -> parts |> List.map (fun (_, _, kind) -> kind)

    placed
    |> Map.forall (fun name placement ->
        not (name.EndsWith ".bias")
        || blocks placement = blocks placed[name.Replace(".bias", ".weight")])

let fixtureShapes (file: string) =
    Safetensors.read (Safetensors.dataPath file)
    |> Map.toList
    |> List.map (fun (name, t) -> { Name = name; Shape = t.Shape })

[<Tests>]
let tests =
    testList
        "Taxonomy"
        [
            testPropertyWithConfig config "BlockwiseLR GPT-2: every parameter in its block, counts add up"
            <| Prop.forAll shapes (fun m -> placesAsBuilt (gpt2Ours m) && countsAddUp (gpt2Ours m))

            testPropertyWithConfig config "Hugging Face LLaMA (GQA, tied or not): every parameter in its block"
            <| Prop.forAll shapes (fun m -> placesAsBuilt (llama m) && countsAddUp (llama m))

            testPropertyWithConfig config "HF GPT-2 Conv1D c_attn: Q and K thirds to QK, V third to VO (columns)"
            <| Prop.forAll shapes (fun m -> placesAsBuilt (gpt2Hf m) && countsAddUp (gpt2Hf m))

            testPropertyWithConfig config "nanoGPT Linear c_attn: the fused dimension is found from the shape (rows)"
            <| Prop.forAll shapes (fun m -> placesAsBuilt (gpt2NanoGpt m))

            testPropertyWithConfig config "a bias always lands where its weight lands"
            <| Prop.forAll shapes (fun m ->
                biasFollowsWeight (gpt2Ours { m with Bias = true })
                && biasFollowsWeight (gpt2Hf m))

            testPropertyWithConfig config "every unmatched name is reported, and only those"
            <| Prop.forAll (Arb.fromGen (Gen.zip modelShape (Gen.choose (1, 5)))) (fun (m, junkCount) ->
                let junk =
                    [
                        for i in 1..junkCount ->
                            {
                                Name = sprintf "extra.adapter%d.lora_A" i
                                Shape = [ 4L; 4L ]
                            }
                    ]

                match Taxonomy.partition BlockRule.defaults (infos (llama m) @ junk) with
                | Ok _ -> false
                | Error message ->
                    message.StartsWith(sprintf "%d parameter(s) match no block rule" junkCount)
                    && junk |> List.forall (fun j -> message.Contains j.Name)
                    && llama m |> List.forall (fun (name, _, _) -> not (message.Contains name)))

            testPropertyWithConfig config "a user rule overrides the built-in rule for its parameter only"
            <| Prop.forAll
                (Arb.fromGen (Gen.zip3 modelShape (Gen.choose (0, 10000)) (Gen.elements BlockKind.all)))
                (fun (m, pick, kind) ->
                    let expected = llama m
                    let name, _, _ = expected[pick % expected.Length]

                    let rules =
                        BlockRule.withUserRules
                            [
                                {
                                    Pattern = name
                                    Assignment = Whole kind
                                }
                            ]
                            BlockRule.defaults

                    let placed =
                        Taxonomy.partition rules (infos expected) |> Result.defaultWith failwith

                    List.forall2
                        (fun (p: PlacedParameter) (n, _, placement) ->
                            p.Placement = (if n = name then WholeTensor kind else placement))
                        placed
                        expected)

            testPropertyWithConfig config "rule text round-trips through format and parse"
            <| Prop.forAll
                (Arb.fromGen (
                    gen {
                        let! segments =
                            Gen.listOfLength 3 (Gen.elements [ "layers"; "*"; "attention"; "wq"; "w?"; "weight"; "0" ])

                        let! kinds =
                            Gen.nonEmptyListOf (Gen.elements BlockKind.all) |> Gen.map (List.truncate 4)

                        return
                            {
                                Pattern = String.concat "." segments
                                Assignment =
                                    (match kinds with
                                     | [ k ] -> Whole k
                                     | ks -> Fused ks)
                            }
                    }
                ))
                (fun rule -> BlockRule.parse (BlockRule.format rule) = Ok rule)

            test "the HF GPT-2 fixture's real names and shapes partition into the expected block sizes" {
                let placed =
                    Taxonomy.partition BlockRule.defaults (fixtureShapes "hf-gpt2-tiny/model.safetensors")
                    |> Result.defaultWith failwith
                // width 64, 2 layers, vocab 256, context 64, mlp 256, biases everywhere (by hand):
                // QK per layer: Q and K columns of c_attn (64x64 each) + their biases = 2*(4096+64)
                // VO per layer: V columns (4096+64) + c_proj (4096+64); FFN per layer: c_fc (16384+256) + c_proj
                // (16384+64)
                Expect.equal
                    (Taxonomy.countsByBlock placed)
                    [
                        Embedding, 256L * 64L
                        PositionEmbedding, 64L * 64L
                        AttentionQK, 2L * 2L * (4096L + 64L)
                        AttentionVO, 2L * 2L * (4096L + 64L)
                        FeedForward, 2L * (16384L + 256L + 16384L + 64L)
                        Norm, (2L * 2L + 1L) * 128L
                    ]
                    "counts per block"
            }

            test "the HF LLaMA fixture's real names partition totally" {
                let placed =
                    Taxonomy.partition BlockRule.defaults (fixtureShapes "hf-llama-tiny/model.safetensors")
                    |> Result.defaultWith failwith
                // width 64, 4 heads, 2 KV heads (head dim 16), 2 layers, ff 176, vocab 256, untied
                Expect.equal
                    (Taxonomy.countsByBlock placed)
                    [
                        Embedding, 256L * 64L
                        AttentionQK, 2L * (64L * 64L + 32L * 64L)
                        AttentionVO, 2L * (32L * 64L + 64L * 64L)
                        FeedForward, 2L * 3L * 176L * 64L
                        Norm, (2L * 2L + 1L) * 64L
                        OutputHead, 256L * 64L
                    ]
                    "counts per block"
            }

            test "rule files: comments, blank lines, and errors with the source and line" {
                let text =
                    "# torchtitan names\nlayers.*.attention.wq.weight = qk\n\nlayers.*.attention.wqkv.weight = \
                     qk,qk,vo  # fused\n"

                let rules = BlockRule.parseMany "rules.txt" text |> Result.defaultWith failwith

                Expect.equal
                    rules
                    [
                        {
                            Pattern = "layers.*.attention.wq.weight"
                            Assignment = Whole AttentionQK
                        }
                        {
                            Pattern = "layers.*.attention.wqkv.weight"
                            Assignment = Fused [ AttentionQK; AttentionQK; AttentionVO ]
                        }
                    ]
                    "parsed rules"

                Expect.equal
                    (BlockRule.parseMany "rules.txt" "a.weight=qk\n\nb.weight=ffx")
                    (Error
                        "rules.txt line 3: rule 'b.weight=ffx': unknown block 'ffx' (known: emb, pe, qk, vo, ffn, \
                         norm, head)")
                    "unknown block"

                Expect.isError (BlockRule.parse "no-equals-sign") "missing ="
            }

            test "a fused rule on a shape without a 3x dimension is an error naming the parameter" {
                let rules =
                    [
                        {
                            Pattern = "qkv.weight"
                            Assignment = Fused [ AttentionQK; AttentionQK; AttentionVO ]
                        }
                    ]

                match
                    Taxonomy.partition
                        rules
                        [
                            {
                                Name = "blk.qkv.weight"
                                Shape = [ 5L; 7L ]
                            }
                        ]
                with
                | Error e -> Expect.stringContains e "blk.qkv.weight" "names the parameter"
                | Ok _ -> failtest "accepted a shape that cannot be split in three"
            }

            test "duplicate names are refused" {
                let p =
                    {
                        Name = "lm_head.weight"
                        Shape = [ 2L; 2L ]
                    }

                Expect.isError (Taxonomy.partition BlockRule.defaults [ p; p ]) "duplicates"
            }

            test "patterns match whole dot-separated suffixes, not arbitrary substrings" {
                Expect.isTrue (BlockRule.matches "attn.q_proj.weight" "transformer.h.0.attn.q_proj.weight") "dot suffix"

                Expect.isFalse
                    (BlockRule.matches "attn.q_proj.weight" "model.layers.0.self_attn.q_proj.weight")
                    "self_attn is not attn"

                Expect.isTrue (BlockRule.matches "layers.*.wq.weight" "layers.3.attention.wq.weight") "star spans dots"
            }
        ]
