namespace BlockwiseLR.Core

open System

/// A measured quantity: its mean over samples (mini-batches or probes) and the standard error of that mean.
type Estimate = { Mean: float; StdErr: float; Samples: int }

/// Block sharpness bookkeeping (method.md section 2): the paper's proxy, summaries, orderings, and the rule that
/// turns measured sharpness into LR ratios.
[<RequireQualifiedAccess>]
module Sharpness =
    /// Mean and standard error (sample standard deviation / sqrt n; 0 for one sample).
    let summarize (samples: float list) : Estimate =
        let n = List.length samples
        if n = 0 then invalidArg "samples" "no samples"
        let mean = List.average samples
        let variance = if n < 2 then 0.0 else (samples |> List.sumBy (fun x -> (x - mean) ** 2.0)) / float (n - 1)
        { Mean = mean; StdErr = sqrt (variance / float n); Samples = n }

    /// The paper's proxy from one mini-batch of B sequences: B x ||grad_b L_B||^2 / #params(b).
    let proxy (batchSize: int) (gradientSquaredNorm: float) (parameters: int64) =
        float batchSize * gradientSquaredNorm / float parameters

    /// The paper's ordering, flattest first: S(Emb) << S(QK) < S(FFN) < S(VO) << S(Norm).
    let paperOrder = [ Embedding; AttentionQK; FeedForward; AttentionVO; Norm ]

    /// The measured order of the paper's five blocks, flattest first (blocks not measured are left out).
    let order (estimates: (BlockKind * float) list) =
        estimates |> List.filter (fun (k, _) -> List.contains k paperOrder) |> List.sortBy snd |> List.map fst

    /// Whether a measured order is the paper's (over the blocks measured).
    let matchesPaper (measured: BlockKind list) =
        measured = (paperOrder |> List.filter (fun k -> List.contains k measured))

    /// The gradient-noise scale B_noise = tr(Sigma) / |G|^2 (McCandlish et al. 2018, appendix A) from the squared
    /// norms of one gradient over a small batch of b sequences and over the whole batch of B > b: unbiased
    /// |G|^2 = (B |g_B|^2 - b |g_b|^2) / (B - b) and tr(Sigma) = (|g_b|^2 - |g_B|^2) / (1/b - 1/B). None when the
    /// estimate of |G|^2 is not positive (the noise hides the signal); tr(Sigma) below 0 counts as 0.
    let noiseScale (small: int) (big: int) (smallSquared: float) (bigSquared: float) =
        let b, bb = float small, float big
        let signal = (bb * bigSquared - b * smallSquared) / (bb - b)
        let trace = max 0.0 ((smallSquared - bigSquared) / (1.0 / b - 1.0 / bb))
        if signal > 0.0 && Double.IsFinite trace then Some(trace / signal) else None

    /// The adaptive rule: r_b = clamp((S_norm / S_b)^alpha, 1, rMax). Flatter blocks than the norms get larger LRs,
    /// never less than the base and never more than rMax times it.
    let adaptiveRatio (alpha: float) (rMax: float) (sharpnessNorm: float) (sharpnessBlock: float) =
        if not (sharpnessNorm > 0.0 && sharpnessBlock > 0.0) then 1.0
        else Math.Clamp((sharpnessNorm / sharpnessBlock) ** alpha, 1.0, rMax)

/// The smoothed sharpness per block behind `--ratios auto`, the ratios last set from it, and the smoothed squared
/// gradient norms of a small and the whole batch behind the noise correction (empty without micro-batches).
type AutoRatioState =
    { Steps: int
      Smoothed: Map<BlockKind, float>
      Ratios: Map<BlockKind, float>
      SmallSquared: Map<BlockKind, float>
      BigSquared: Map<BlockKind, float> }

[<RequireQualifiedAccess>]
module AutoRatios =
    let start = { Steps = 0; Smoothed = Map.empty; Ratios = Map.empty; SmallSquared = Map.empty; BigSquared = Map.empty }

    /// A block's LR from the uniform (AdamW) schedule's value x at a step: x + (ratio - 1) (x - floor) above the
    /// floor, x below it. The peak becomes about ratio x base and every block still ends at the one shared floor.
    let scaleAboveFloor (ratio: float) (floor: float) (x: float) = x + (ratio - 1.0) * max 0.0 (x - floor)

    let private fold (smoothing: float) (state: Map<BlockKind, float>) (measured: (BlockKind * float) list) =
        measured
        |> List.fold (fun (m: Map<BlockKind, float>) (k, s) ->
            let previous = m |> Map.tryFind k |> Option.defaultValue 0.0
            m.Add(k, smoothing * previous + (1.0 - smoothing) * s)) state

    /// Each block's noise factor 1 + B_noise,b / B from the smoothed squared norms (the moving averages' bias
    /// correction cancels in B_noise). A block whose |G|^2 estimate is not positive gets the largest factor measured
    /// (the noisiest); none measured, or no estimate at all: 1 for every block.
    let noiseFactors (small: int) (big: int) (state: AutoRatioState) =
        let factors =
            state.BigSquared |> Map.map (fun k bigSq ->
                state.SmallSquared |> Map.tryFind k
                |> Option.bind (fun smallSq -> Sharpness.noiseScale small big smallSq bigSq)
                |> Option.map (fun n -> 1.0 + n / float big))
        let measured = factors |> Map.toList |> List.choose snd
        let noisiest = if measured.IsEmpty then 1.0 else List.max measured
        fun (k: BlockKind) ->
            match factors |> Map.tryFind k with
            | Some(Some f) -> f
            | Some None -> noisiest
            | None -> 1.0

    /// One step: fold this step's proxy sharpness per block into exponential moving averages (bias-corrected), and
    /// with micro-batches (small < big) the squared gradient norms of the small batch and the whole batch per block
    /// (`noise`: block, |g_b|^2, |g_B|^2; empty: no correction); every `every` steps set each block's ratio to
    /// clamp((S'_norm / S'_b)^alpha, 1, rMax) with S'_b = S_b (1 + B_noise,b / B): the sharpness a block's step must
    /// respect, raised by how much of its gradient is noise at this batch size. Norms keep ratio 1.
    let observeWithNoise (smoothing: float) (alpha: float) (rMax: float) (every: int) (small: int) (big: int)
                         (sharpness: (BlockKind * float) list) (noise: (BlockKind * float * float) list) (state: AutoRatioState) =
        let steps = state.Steps + 1
        let smoothed = fold smoothing state.Smoothed sharpness
        let smallSquared = fold smoothing state.SmallSquared (noise |> List.map (fun (k, s, _) -> k, s))
        let bigSquared = fold smoothing state.BigSquared (noise |> List.map (fun (k, _, b) -> k, b))
        let next = { state with Steps = steps; Smoothed = smoothed; SmallSquared = smallSquared; BigSquared = bigSquared }
        if steps % every <> 0 || not (smoothed.ContainsKey Norm) then next
        else
            let factor = if small < big then noiseFactors small big next else fun _ -> 1.0
            let effective k = smoothed[k] / (1.0 - smoothing ** float steps) * factor k
            let ratios = smoothed |> Map.map (fun k _ -> if k = Norm then 1.0 else Sharpness.adaptiveRatio alpha rMax (effective Norm) (effective k))
            { next with Ratios = ratios }

    /// `observeWithNoise` without micro-batches: the sharpness rule alone.
    let observe (smoothing: float) (alpha: float) (rMax: float) (every: int) (sharpness: (BlockKind * float) list) (state: AutoRatioState) =
        observeWithNoise smoothing alpha rMax every 1 1 sharpness [] state

    /// The ratio in force for a block (1 until the first update).
    let ratioOf (state: AutoRatioState) (kind: BlockKind) = state.Ratios |> Map.tryFind kind |> Option.defaultValue 1.0
