namespace BlockwiseLR.Core

open BlockwiseLR

open System

/// How many coordinates share one second-moment scalar v (docs/method.md section 6).
type internal VGranularity =
    /// One v per attention head: the head's rows of a Q or K projection.
    | PerHead
    /// One v per row: an output neuron of a Linear (out, in) matrix, or a token of an embedding.
    | PerRow
    /// One v for the whole tensor (norms and anything else): v uses sum(g^2)/numel.
    | PerTensor
    /// Plain Adam: one v per coordinate (biases).
    | PerCoordinate

/// A contiguous run of `Blocks` equal v-blocks of `BlockSize` coordinates each, starting at flat offset
/// `Offset` of the row-major tensor.
type internal VSegment =
    {
        /// The flat offset of the first v-block in the row-major tensor.
        Offset: int64
        /// The number of v-blocks in the run.
        Blocks: int64
        /// Coordinates per v-block (all sharing one second-moment scalar).
        BlockSize: int64
        /// What each v-block is (a head, a row, the whole tensor or one coordinate).
        Granularity: VGranularity
    }

/// Adam-mini's layout for one parameter.
type internal AdamMiniPlan =
    {
        /// The parameter's state-dict name.
        Name: string
        /// The parameter's shape.
        Shape: int64 list
        /// The v-block runs that tile the flattened parameter, in order.
        Segments: VSegment list
        /// Adam-mini 1.1.1: no weight decay for names containing `norm`, `ln` or `bias`.
        WeightDecay: bool
    }

/// Adam-mini's partition of parameters into v-blocks (docs/method.md section 6).
[<RequireQualifiedAccess>]
module internal AdamMiniPartition =
    /// The attention shape if width, heads and kv-heads are all >= 1 and divide as Adam-mini's head cut needs;
    /// otherwise the reason.
    let validateAttention (a: AttentionShape) : Result<AttentionShape, string> =
        if a.Heads < 1 || a.KvHeads < 1 || a.Width < 1 then
            Error(sprintf "width %d, heads %d and kv-heads %d must all be >= 1" a.Width a.Heads a.KvHeads)
        elif a.Width % a.Heads <> 0 then
            Error(sprintf "width %d is not divisible by heads %d" a.Width a.Heads)
        elif a.Heads % a.KvHeads <> 0 then
            Error(sprintf "heads %d is not divisible by kv-heads %d" a.Heads a.KvHeads)
        else
            Ok a

    /// v-segments for `rows` consecutive rows (of `cols` coordinates each) starting at row `firstRow`
    /// of a matrix whose rows all belong to block `kind`.
    let private rowSegments (attention: AttentionShape) name kind firstRow rows cols =
        let headDim = int64 (attention.Width / attention.Heads)

        match kind with
        | AttentionQK when rows % headDim <> 0L ->
            Error(sprintf "%s: %d Q/K rows are not a whole number of heads of %d rows" name rows headDim)
        | AttentionQK ->
            // Q has `Heads` blocks, K (under GQA) has `KvHeads`: rows / headDim either way.
            Ok
                {
                    Offset = firstRow * cols
                    Blocks = rows / headDim
                    BlockSize = headDim * cols
                    Granularity = PerHead
                }
        | Embedding
        | PositionEmbedding
        | OutputHead
        | AttentionVO
        | FeedForward ->
            Ok
                {
                    Offset = firstRow * cols
                    Blocks = rows
                    BlockSize = cols
                    Granularity = PerRow
                }
        | Norm ->
            Ok
                {
                    Offset = firstRow * cols
                    Blocks = 1L
                    BlockSize = rows * cols
                    Granularity = PerTensor
                }

    /// Adam-mini's v-blocks for one placed parameter, in BlockwiseLR's Linear (out, in) layout. Where
    /// Adam-mini 1.1.1 has no rule for our layout we follow its intent: one v per output neuron, and the
    /// position embedding one v per row like the token embedding.
    let plan (attention: AttentionShape) (placed: PlacedParameter) : Result<AdamMiniPlan, string> =
        let p = placed.Parameter
        let numel = Taxonomy.numel p.Shape
        let decay = WeightDecay.applies WeightDecayPolicy.AdamMiniNames p.Name p.Shape

        let single granularity blockSize =
            Ok
                [
                    {
                        Offset = 0L
                        Blocks = numel / blockSize
                        BlockSize = blockSize
                        Granularity = granularity
                    }
                ]

        let segments =
            match placed.Placement, p.Shape with
            | _ when p.Name.EndsWith(".bias", StringComparison.Ordinal) -> single PerCoordinate 1L
            | WholeTensor Norm, _ -> single PerTensor (max 1L numel)
            | WholeTensor kind, [ rows; cols ] ->
                rowSegments attention p.Name kind 0L rows cols |> Result.map List.singleton
            | WholeTensor _, _ -> single PerTensor (max 1L numel)
            | Slices(0, parts), [ _; cols ] ->
                parts
                |> List.map (fun (start, length, kind) -> rowSegments attention p.Name kind start length cols)
                |> List.fold
                    (fun acc r ->
                        match acc, r with
                        | Ok xs, Ok x -> Ok(xs @ [ x ])
                        | Error e, _
                        | _, Error e -> Error e)
                    (Ok [])
            | Slices _, shape ->
                Error(
                    sprintf
                        "%s %A: Adam-mini needs a fused projection in Linear (out, in) layout; import splits HF \
                         Conv1D weights into q/k/v first"
                        p.Name
                        shape
                )

        segments
        |> Result.map (fun segs ->
            {
                Name = p.Name
                Shape = p.Shape
                Segments = segs
                WeightDecay = decay
            })

    /// The number of second-moment scalars a plan keeps.
    let vCount (plan: AdamMiniPlan) =
        plan.Segments |> List.sumBy (fun s -> s.Blocks)

    /// The segments of several plans laid end to end in one flat buffer (in the order given), with adjacent
    /// segments of equal block size merged: one reduction then serves, for example, every per-head Q and K
    /// block of a model, or every LayerNorm weight. Coverage and the number of v scalars are unchanged.
    let concat (plans: AdamMiniPlan list) : VSegment list =
        let laidOut =
            plans
            |> List.mapFold
                (fun start plan ->
                    plan.Segments |> List.map (fun s -> { s with Offset = start + s.Offset }),
                    start + Taxonomy.numel plan.Shape)
                0L
            |> fst
            |> List.concat

        laidOut
        |> List.fold
            (fun merged s ->
                match merged with
                | last :: rest when
                    last.BlockSize = s.BlockSize
                    && last.Offset + last.Blocks * last.BlockSize = s.Offset
                    ->
                    { last with
                        Blocks = last.Blocks + s.Blocks
                    }
                    :: rest
                | _ -> s :: merged)
            []
        |> List.rev
