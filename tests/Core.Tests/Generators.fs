/// Generated GPT-2 and LLaMA parameter lists, each parameter with the block it must land in (the oracle
/// comes from how the model is built, not from the classifier under test).
module internal BlockwiseLR.Core.Tests.Generators

open FsCheck
open FsCheck.FSharp
open BlockwiseLR
open BlockwiseLR.Core

type ModelShape =
    {
        Layers: int
        Heads: int
        KvHeads: int
        HeadDim: int
        FeedForward: int
        Vocab: int
        Context: int
        Tied: bool
        Bias: bool
    }

    member m.Width = m.Heads * m.HeadDim

    member m.Attention =
        {
            Width = m.Width
            Heads = m.Heads
            KvHeads = m.KvHeads
        }

/// (name, shape, expected placement)
type Expected = string * int64 list * Placement

let modelShape =
    gen {
        let! layers = Gen.choose (1, 6)
        let! heads = Gen.choose (1, 8)

        let divisors =
            [
                for k in 1..heads do
                    if heads % k = 0 then
                        k
            ]

        let! kvHeads = Gen.elements divisors
        let! headDim = Gen.elements [ 1; 2; 4; 8; 16 ]
        let! ff = Gen.choose (1, 96)
        let! vocab = Gen.choose (2, 300)
        let! context = Gen.choose (1, 64)
        let! tied = Gen.elements [ true; false ]
        let! bias = Gen.elements [ true; false ]

        return
            {
                Layers = layers
                Heads = heads
                KvHeads = kvHeads
                HeadDim = headDim
                FeedForward = ff
                Vocab = vocab
                Context = context
                Tied = tied
                Bias = bias
            }
    }

let private whole name shape kind : Expected = name, shape, WholeTensor kind

/// BlockwiseLR's GPT-2: HF names, Linear (out, in) layout, separate q/k/v projections.
let gpt2Ours (m: ModelShape) : Expected list =
    let d = int64 m.Width
    let ff = int64 m.FeedForward

    let linear prefix outDim inDim kind =
        [
            yield whole (prefix + ".weight") [ outDim; inDim ] kind
            if m.Bias then
                yield whole (prefix + ".bias") [ outDim ] kind
        ]

    let norm prefix =
        [
            yield whole (prefix + ".weight") [ d ] Norm
            if m.Bias then
                yield whole (prefix + ".bias") [ d ] Norm
        ]

    [
        yield whole "transformer.wte.weight" [ int64 m.Vocab; d ] Embedding
        yield whole "transformer.wpe.weight" [ int64 m.Context; d ] PositionEmbedding
        for i in 0 .. m.Layers - 1 do
            let p = sprintf "transformer.h.%d" i
            yield! norm (p + ".ln_1")
            yield! linear (p + ".attn.q_proj") d d AttentionQK
            yield! linear (p + ".attn.k_proj") d d AttentionQK
            yield! linear (p + ".attn.v_proj") d d AttentionVO
            yield! linear (p + ".attn.c_proj") d d AttentionVO
            yield! norm (p + ".ln_2")
            yield! linear (p + ".mlp.c_fc") ff d FeedForward
            yield! linear (p + ".mlp.c_proj") d ff FeedForward
        yield! norm "transformer.ln_f"
        if not m.Tied then
            yield whole "lm_head.weight" [ int64 m.Vocab; d ] OutputHead
    ]

/// Hugging Face GPT-2: Conv1D (in, out) weights, fused c_attn, biases everywhere.
let gpt2Hf (m: ModelShape) : Expected list =
    let d = int64 m.Width
    let ff = int64 m.FeedForward
    let qkv = [ 0L, d, AttentionQK; d, d, AttentionQK; 2L * d, d, AttentionVO ]

    [
        yield whole "transformer.wte.weight" [ int64 m.Vocab; d ] Embedding
        yield whole "transformer.wpe.weight" [ int64 m.Context; d ] PositionEmbedding
        for i in 0 .. m.Layers - 1 do
            let p = sprintf "transformer.h.%d" i
            yield whole (p + ".ln_1.weight") [ d ] Norm
            yield whole (p + ".ln_1.bias") [ d ] Norm
            yield (p + ".attn.c_attn.weight"), [ d; 3L * d ], Slices(1, qkv)
            yield (p + ".attn.c_attn.bias"), [ 3L * d ], Slices(0, qkv)
            yield whole (p + ".attn.c_proj.weight") [ d; d ] AttentionVO
            yield whole (p + ".attn.c_proj.bias") [ d ] AttentionVO
            yield whole (p + ".ln_2.weight") [ d ] Norm
            yield whole (p + ".ln_2.bias") [ d ] Norm
            yield whole (p + ".mlp.c_fc.weight") [ d; ff ] FeedForward
            yield whole (p + ".mlp.c_fc.bias") [ ff ] FeedForward
            yield whole (p + ".mlp.c_proj.weight") [ ff; d ] FeedForward
            yield whole (p + ".mlp.c_proj.bias") [ d ] FeedForward
        yield whole "transformer.ln_f.weight" [ d ] Norm
        yield whole "transformer.ln_f.bias" [ d ] Norm
    ]

/// nanoGPT's GPT-2: fused c_attn as a Linear (3d, d).
let gpt2NanoGpt (m: ModelShape) : Expected list =
    let d = int64 m.Width

    gpt2Hf m
    |> List.map (fun (name, shape, placement) ->
        if name.EndsWith "c_attn.weight" then
            name, [ 3L * d; d ], Slices(0, [ 0L, d, AttentionQK; d, d, AttentionQK; 2L * d, d, AttentionVO ])
        else
            name, shape, placement)

/// Hugging Face LLaMA (BlockwiseLR's LLaMA uses the same names and layout).
let llama (m: ModelShape) : Expected list =
    let d = int64 m.Width
    let hd = int64 m.HeadDim
    let ff = int64 m.FeedForward

    [
        yield whole "model.embed_tokens.weight" [ int64 m.Vocab; d ] Embedding
        for i in 0 .. m.Layers - 1 do
            let p = sprintf "model.layers.%d" i
            yield whole (p + ".input_layernorm.weight") [ d ] Norm
            yield whole (p + ".self_attn.q_proj.weight") [ int64 m.Heads * hd; d ] AttentionQK
            yield whole (p + ".self_attn.k_proj.weight") [ int64 m.KvHeads * hd; d ] AttentionQK
            yield whole (p + ".self_attn.v_proj.weight") [ int64 m.KvHeads * hd; d ] AttentionVO
            yield whole (p + ".self_attn.o_proj.weight") [ d; int64 m.Heads * hd ] AttentionVO
            yield whole (p + ".post_attention_layernorm.weight") [ d ] Norm
            yield whole (p + ".mlp.gate_proj.weight") [ ff; d ] FeedForward
            yield whole (p + ".mlp.up_proj.weight") [ ff; d ] FeedForward
            yield whole (p + ".mlp.down_proj.weight") [ d; ff ] FeedForward
        yield whole "model.norm.weight" [ d ] Norm
        yield whole "lm_head.weight" [ int64 m.Vocab; d ] OutputHead
    ]

let infos (expected: Expected list) =
    expected |> List.map (fun (name, shape, _) -> { Name = name; Shape = shape })

/// Every property runs on 200 generated cases.
let config =
    { Expecto.FsCheckConfig.defaultConfig with
        maxTest = 200
    }

/// A schedule spec with every block ratio >= 1 (as in every preset), valid for the ratios given.
type ScheduleCase =
    {
        Spec: ScheduleSpec
        Ratios: RatioSpec
    }

let ratioSpec =
    gen {
        let! values =
            Gen.arrayOfLength 7 (Gen.choose (100, 1200) |> Gen.map (fun x -> float x / 100.0))

        let! explicitHead = Gen.elements [ true; false ]

        return
            {
                Embedding = values[0]
                PositionEmbedding = values[1]
                AttentionQK = values[2]
                AttentionVO = values[3]
                FeedForward = values[4]
                Norm = values[5]
                OutputHead = (if explicitHead then Some values[6] else None)
            }
    }

let scheduleKind =
    Gen.elements
        [
            WarmupCosine
            WarmupLinear
            WarmupConstant
            WarmupStableDecay(0.2, Linear)
            WarmupStableDecay(0.3, Cosine)
            WarmupStableDecay(0.25, OneMinusSqrt)
            WsdRatioAnneal
        ]

let scheduleCase (kinds: Gen<ScheduleKind>) (alpha: bool) =
    gen {
        let! ratios = ratioSpec
        let! kind = kinds
        let! baseExponent = Gen.choose (-50, -20)
        let baseLr = 10.0 ** (float baseExponent / 10.0)
        let! floorDivisor = Gen.elements [ 10.0; 20.0; 100.0; infinity ]
        let! warmup = Gen.choose (0, 40)
        let! extra = Gen.choose (1, 300)

        let maxRatio =
            Ratios.ratioOf false ratios |> fun f -> BlockKind.all |> List.map f |> List.max

        let warmupSpan =
            if alpha then
                int (ceil (float warmup * maxRatio))
            else
                warmup

        let total =
            match kind with
            | WarmupStableDecay(fraction, _) -> int (ceil (float (warmupSpan + extra) / (1.0 - fraction)))
            | WsdRatioAnneal -> 3 * (warmupSpan + extra)
            | _ -> warmupSpan + extra

        return
            {
                Spec =
                    {
                        Kind = kind
                        BaseLr = baseLr
                        FloorLr = baseLr / floorDivisor
                        WarmupSteps = warmup
                        TotalSteps = total
                        AlphaWarmup = alpha
                    }
                Ratios = ratios
            }
    }
