namespace BlockwiseLR.Core

open BlockwiseLR

open System

/// SplitMix64: a small, portable PRNG whose sequence is fixed by its seed on every platform and .NET version
/// (System.Random's sequence is not a documented contract), so a seed names one data order forever.
type internal SplitMix64
    /// A generator whose sequence starts from `seed`.
    (seed: uint64) =
    let mutable state = seed

    /// The next 64-bit value of the sequence.
    member _.Next() : uint64 =
        state <- state + 0x9E3779B97F4A7C15UL
        let mutable z = state
        z <- (z ^^^ (z >>> 30)) * 0xBF58476D1CE4E5B9UL
        z <- (z ^^^ (z >>> 27)) * 0x94D049BB133111EBUL
        z ^^^ (z >>> 31)

    /// Uniform in [0, bound) (Lemire's multiply-shift, with rejection so it is exactly uniform).
    member r.Below(bound: int64) : int64 =
        if bound <= 0L then
            invalidArg "bound" "must be > 0"

        let b = uint64 bound
        let threshold = (0UL - b) % b
        let mutable x = r.Next()

        while x < threshold do
            x <- r.Next()

        int64 (x % b)

/// Training windows: seq_len + 1 contiguous tokens starting at multiples of seq_len inside one shard (a window
/// never crosses a shard), numbered shard by shard.
type internal WindowLayout =
    {
        /// Tokens per input sequence (a window holds one more).
        SeqLen: int
        /// Windows in each shard.
        PerShard: int64 list
    }

    /// Windows in all shards.
    member l.Total = List.sum l.PerShard

/// Windows, data order and the validation split.
[<RequireQualifiedAccess>]
module internal Sampling =
    /// Windows of seq_len + 1 tokens at starts 0, L, 2L, ... that fit in n tokens.
    let windowsIn (seqLen: int) (tokens: int64) =
        if tokens < int64 seqLen + 1L then
            0L
        else
            (tokens - 1L) / int64 seqLen

    /// Layout over shards of the given token counts; an error when no window fits anywhere.
    let layout (seqLen: int) (shardTokens: int64 list) : Result<WindowLayout, string> =
        if seqLen < 1 then
            Error(sprintf "sequence length %d must be >= 1" seqLen)
        else
            let l =
                {
                    SeqLen = seqLen
                    PerShard = shardTokens |> List.map (windowsIn seqLen)
                }

            if l.Total = 0L then
                let largest = if shardTokens.IsEmpty then 0L else List.max shardTokens

                Error(
                    sprintf
                        "sequence length %d is longer than the data: a window needs %d tokens and the largest shard \
                         has %d; use a shorter SeqLen or more data"
                        seqLen
                        (seqLen + 1)
                        largest
                )
            else
                Ok l

    /// (shard, first token) of window `index` (0-based, shard by shard).
    let locate (l: WindowLayout) (index: int64) : int * int64 =
        let rec go shard remaining counts =
            match counts with
            | count :: rest when remaining >= count -> go (shard + 1) (remaining - count) rest
            | _ :: _ -> shard, remaining * int64 l.SeqLen
            | [] -> invalidArg "index" (sprintf "window %d is beyond the %d windows" index l.Total)

        go 0 index l.PerShard

    /// The order of windows in one epoch: a Fisher-Yates shuffle seeded by (seed, epoch).
    let permutation (seed: uint64) (epoch: int) (count: int64) : int64[] =
        let order = Array.init (int count) int64
        let rng = SplitMix64(seed * 0x9E3779B97F4A7C15UL + uint64 epoch + 1UL)

        for i in order.Length - 1 .. -1 .. 1 do
            let j = int (rng.Below(int64 i + 1L))
            let t = order[i]
            order[i] <- order[j]
            order[j] <- t

        order

    /// The next `count` window indices from `position`, moving into the next epoch when one runs out,
    /// and the position after them. `permutationOf epoch` supplies (and may cache) each epoch's order.
    let take (permutationOf: int -> int64[]) (total: int64) (position: SamplerPosition) (count: int) =
        let windows = Array.zeroCreate<int64> count
        let mutable p = position

        for i in 0 .. count - 1 do
            if p.Index >= total then
                p <- { Epoch = p.Epoch + 1; Index = 0L }

            windows[i] <- (permutationOf p.Epoch)[int p.Index]
            p <- { p with Index = p.Index + 1L }

        windows, p

    /// Validation: the first `count` non-overlapping windows, in order (as llm.c does), the same every time.
    let validationWindows (l: WindowLayout) (count: int64) : int64[] =
        Array.init (int (min count l.Total)) int64

    /// The val split of one block of a streamed corpus (`blr prepare` decides each block of chunks as the stream
    /// passes): the same choice, shuffled by (seed, block), so block 0 is exactly `chooseValChunks`.
    let chooseValChunksInBlock
        (seed: uint64)
        (block: int)
        (chunkTokens: int64[])
        (targetTokens: int64)
        : Result<Set<int>, string> =
        if targetTokens <= 0L then
            Error "the val split is empty: give ValFraction > 0 or ValTokens > 0"
        elif chunkTokens.Length < 2 then
            Error(
                sprintf
                    "the corpus has %d chunk(s): a val split needs at least one chunk and training at least one; add \
                     data or lower ChunkTokens"
                    chunkTokens.Length
            )
        else
            let order = permutation seed block chunkTokens.LongLength
            let mutable taken = Set.empty
            let mutable tokens = 0L
            let mutable i = 0

            while tokens < targetTokens && i < order.Length do
                taken <- taken.Add(int order[i])
                tokens <- tokens + chunkTokens[int order[i]]
                i <- i + 1

            if taken.Count = chunkTokens.Length then
                Error(
                    sprintf
                        "the val split (%d tokens wanted) would take the whole corpus (%d tokens); lower ValFraction \
                         or ValTokens"
                        targetTokens
                        (Array.sum chunkTokens)
                )
            else
                Ok taken

    /// The val split: chunks shuffled with `seed`, taken until they hold at least `targetTokens`. An error when
    /// that is no chunk, or every chunk (no training data would be left).
    let chooseValChunks (seed: uint64) (chunkTokens: int64[]) (targetTokens: int64) : Result<Set<int>, string> =
        chooseValChunksInBlock seed 0 chunkTokens targetTokens
