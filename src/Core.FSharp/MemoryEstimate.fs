namespace BlockwiseLR.Core

open BlockwiseLR

/// Training memory in bytes, from shapes alone (nothing is allocated).
type internal MemoryEstimate =
    {
        /// Parameters (elements).
        Parameters: int64
        /// Bytes of the fp32 weights.
        WeightBytes: int64
        /// Bytes of the fp32 gradients.
        GradientBytes: int64
        /// Bytes of the optimizer's fp32 state.
        OptimizerStateBytes: int64
        /// Bytes of the activations kept for the backward pass.
        ActivationBytes: int64
    }

    /// The sum of weights, gradients, optimizer state and activations, in bytes.
    member m.TotalBytes =
        m.WeightBytes + m.GradientBytes + m.OptimizerStateBytes + m.ActivationBytes

/// Training-memory estimates from a config's shapes alone.
[<RequireQualifiedAccess>]
module internal MemoryEstimate =
    /// fp32 state per block: AdamW keeps m and v per coordinate; Adam-mini keeps m per coordinate and one v
    /// per block of its partition; Lion keeps m per coordinate; Muon one momentum buffer per coordinate of the
    /// matrices it orthogonalizes and AdamW's m and v for the rest.
    let optimizerStateBytesByBlock
        (config: ModelConfig)
        (family: OptimizerFamily)
        : Result<(BlockKind * int64) list, string> =
        Taxonomy.partition BlockRule.defaults (ModelConfig.parameters config)
        |> Result.bind (fun placed ->
            placed
            |> List.map (fun p ->
                let block =
                    match p.Placement with
                    | WholeTensor kind -> kind
                    | Slices(_, parts) -> parts |> List.head |> fun (_, _, k) -> k

                let numel = Taxonomy.numel p.Parameter.Shape

                match family with
                | OptimizerFamily.AdamW -> Ok(block, 8L * numel)
                | OptimizerFamily.Lion -> Ok(block, 4L * numel)
                | OptimizerFamily.Muon when Muon.orthogonalizes block p.Parameter.Shape -> Ok(block, 4L * numel)
                | OptimizerFamily.Muon -> Ok(block, 8L * numel)
                | _ ->
                    AdamMiniPartition.plan (ModelConfig.attention config) p
                    |> Result.map (fun plan -> block, 4L * numel + 4L * AdamMiniPartition.vCount plan))
            |> List.fold
                (fun acc r ->
                    match acc, r with
                    | Ok xs, Ok x -> Ok(x :: xs)
                    | Error e, _
                    | _, Error e -> Error e)
                (Ok []))
        |> Result.map (fun items ->
            let sums = items |> List.groupBy fst |> Map.ofList

            BlockKind.all
            |> List.choose (fun k -> sums |> Map.tryFind k |> Option.map (fun xs -> k, xs |> List.sumBy snd)))

    /// Bytes of fp32 optimizer state for the whole model (the sum of `optimizerStateBytesByBlock`).
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

        let attentionProbabilities =
            if mathAttention then int64 c.Heads * int64 seqLen else 0L

        let elementBytes = if precision = Precision.Bf16Mixed then 2L else 4L

        let body =
            tokens
            * (int64 c.Layers * (perLayer + attentionProbabilities) + 3L * d)
            * elementBytes

        let logits = tokens * int64 c.Vocab * 4L * 2L
        body + logits

    /// The estimate for `c` under an optimizer family at a precision, `batch` sequences of `seqLen` tokens per pass
    /// (`mathAttention`: attention probabilities kept); a batch or seqLen below 1 is an error.
    let estimate
        (c: ModelConfig)
        (family: OptimizerFamily)
        (precision: Precision)
        (batch: int)
        (seqLen: int)
        (mathAttention: bool)
        =
        if batch < 1 || seqLen < 1 then
            Error(sprintf "batch size %d and sequence length %d must be >= 1" batch seqLen)
        elif seqLen > c.Context then
            Error(sprintf "sequence length %d exceeds the model's context %d" seqLen c.Context)
        else
            optimizerStateBytes c family
            |> Result.map (fun optimizerBytes ->
                let count = ModelConfig.parameterCount c

                {
                    Parameters = count
                    WeightBytes = 4L * count
                    GradientBytes = 4L * count
                    OptimizerStateBytes = optimizerBytes
                    ActivationBytes = activationBytes c precision batch seqLen mathAttention
                })
