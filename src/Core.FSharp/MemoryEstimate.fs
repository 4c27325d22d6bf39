namespace BlockwiseLR.Core

/// Which optimizer's state to count (Blockwise variants keep the same state as their base).
type OptimizerFamily =
    | AdamW = 0
    | AdamMini = 1

/// Training memory in bytes, from shapes alone (nothing is allocated).
type MemoryEstimate =
    { Parameters: int64
      WeightBytes: int64
      GradientBytes: int64
      OptimizerStateBytes: int64
      ActivationBytes: int64 }

    member m.TotalBytes = m.WeightBytes + m.GradientBytes + m.OptimizerStateBytes + m.ActivationBytes

/// The four optimizers of a run: AdamW or Adam-mini, each plain (one LR for every block) or blockwise (an LR
/// per block from the ratios). An enum, so C# sees it as one; its names are in `Names.optimizers`.
type OptimizerKind =
    | AdamW = 0
    | BlockwiseAdamW = 1
    | AdamMini = 2
    | BlockwiseAdamMini = 3

[<RequireQualifiedAccess>]
module OptimizerKind =
    /// Whose state the optimizer keeps: AdamW's or Adam-mini's.
    let family (kind: OptimizerKind) =
        match kind with
        | OptimizerKind.AdamMini
        | OptimizerKind.BlockwiseAdamMini -> OptimizerFamily.AdamMini
        | _ -> OptimizerFamily.AdamW

    /// Whether each block gets its own peak LR (the plain ones give every block the base LR).
    let isBlockwise (kind: OptimizerKind) =
        kind = OptimizerKind.BlockwiseAdamW || kind = OptimizerKind.BlockwiseAdamMini

[<RequireQualifiedAccess>]
module MemoryEstimate =
    /// fp32 state per block: AdamW keeps m and v per coordinate; Adam-mini keeps m per coordinate and one v
    /// per block of its partition.
    let optimizerStateBytesByBlock (config: ModelConfig) (family: OptimizerFamily) : Result<(BlockKind * int64) list, string> =
        Taxonomy.partition BlockRule.defaults (ModelConfig.parameters config)
        |> Result.bind (fun placed ->
            placed
            |> List.map (fun p ->
                let block = match p.Placement with WholeTensor kind -> kind | Slices(_, parts) -> parts |> List.head |> fun (_, _, k) -> k
                let numel = Taxonomy.numel p.Parameter.Shape
                match family with
                | OptimizerFamily.AdamW -> Ok(block, 8L * numel)
                | _ -> AdamMiniPartition.plan (ModelConfig.attention config) p |> Result.map (fun plan -> block, 4L * numel + 4L * AdamMiniPartition.vCount plan))
            |> List.fold (fun acc r -> match acc, r with Ok xs, Ok x -> Ok(x :: xs) | Error e, _ | _, Error e -> Error e) (Ok []))
        |> Result.map (fun items ->
            let sums = items |> List.groupBy fst |> Map.ofList
            BlockKind.all |> List.choose (fun k -> sums |> Map.tryFind k |> Option.map (fun xs -> k, xs |> List.sumBy snd)))

    let optimizerStateBytes (config: ModelConfig) (family: OptimizerFamily) : Result<int64, string> =
        optimizerStateBytesByBlock config family |> Result.map (List.sumBy snd)

    /// Activations kept for the backward pass, per token and layer, counted from the forward graph:
    /// GPT-2: norm inputs and outputs (4d), q, k, v and the attention output (4d), MLP hidden before and
    /// after GELU (2 d_ff); LLaMA: norms (4d), q, k, v, output (2d + 2 kv), gate, up, SiLU(gate) and their
    /// product (4 d_ff). Plus the attention probabilities (heads x T per token) when the math attention
    /// kernel runs (CPU), the embedding output and final norm (3d), and the fp32 logits twice (logits and
    /// softmax for the loss). An estimate: allocator slack and temporaries are not counted.
    let activationBytes (c: ModelConfig) (precision: Precision) (batch: int) (seqLen: int) (mathAttention: bool) =
        let d = int64 c.Width
        let ff = int64 c.FeedForward
        let kv = int64 (c.KvHeads * c.HeadDim)
        let tokens = int64 batch * int64 seqLen
        let perLayer =
            match c.Architecture with
            | Architecture.Gpt2 -> 8L * d + 2L * ff
            | _ -> 6L * d + 2L * kv + 4L * ff
        let attentionProbabilities = if mathAttention then int64 c.Heads * int64 seqLen else 0L
        let elementBytes = if precision = Precision.Bf16Mixed then 2L else 4L
        let body = tokens * (int64 c.Layers * (perLayer + attentionProbabilities) + 3L * d) * elementBytes
        let logits = tokens * int64 c.Vocab * 4L * 2L
        body + logits

    let estimate (c: ModelConfig) (family: OptimizerFamily) (precision: Precision) (batch: int) (seqLen: int) (mathAttention: bool) =
        if batch < 1 || seqLen < 1 then
            Error(sprintf "batch size %d and sequence length %d must be >= 1" batch seqLen)
        elif seqLen > c.Context then
            Error(sprintf "sequence length %d exceeds the model's context %d" seqLen c.Context)
        else
            optimizerStateBytes c family
            |> Result.map (fun optimizerBytes ->
                let count = ModelConfig.parameterCount c
                { Parameters = count
                  WeightBytes = 4L * count
                  GradientBytes = 4L * count
                  OptimizerStateBytes = optimizerBytes
                  ActivationBytes = activationBytes c precision batch seqLen mathAttention })

/// Model FLOPs for MFU (nanoGPT's / PaLM's estimate).
[<RequireQualifiedAccess>]
module Flops =
    /// Training FLOPs per token: 6 N for the matmuls of N parameters (the position embedding is a lookup, not a
    /// matmul) plus 12 L H Q T for attention scores and values, forward and backward.
    let perToken (c: ModelConfig) (seqLen: int) =
        let lookups =
            ModelConfig.parameters c
            |> List.filter (fun p -> p.Name.EndsWith "wpe.weight" || (not c.Tied && (p.Name.EndsWith "wte.weight" || p.Name.EndsWith "embed_tokens.weight")))
            |> List.sumBy (fun p -> Taxonomy.numel p.Shape)
        6.0 * float (ModelConfig.parameterCount c - lookups) + 12.0 * float c.Layers * float c.Heads * float c.HeadDim * float seqLen

    /// Dense peak TFLOP/s of common GPUs by precision (vendor data sheets, SXM parts).
    let peakTflops =
        [ "h100", (989.0, 494.7, 66.9)      // bf16, tf32, fp32
          "h200", (989.0, 494.7, 66.9)
          "a100", (312.0, 156.0, 19.5) ]
