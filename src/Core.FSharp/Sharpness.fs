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

    /// The adaptive rule: r_b = clamp((S_norm / S_b)^alpha, 1, rMax). Flatter blocks than the norms get larger LRs,
    /// never less than the base and never more than rMax times it.
    let adaptiveRatio (alpha: float) (rMax: float) (sharpnessNorm: float) (sharpnessBlock: float) =
        if not (sharpnessNorm > 0.0 && sharpnessBlock > 0.0) then 1.0
        else Math.Clamp((sharpnessNorm / sharpnessBlock) ** alpha, 1.0, rMax)

/// The smoothed sharpness per block behind `--ratios auto`, and the ratios last set from it.
type AutoRatioState =
    { Steps: int
      Smoothed: Map<BlockKind, float>
      Ratios: Map<BlockKind, float> }

[<RequireQualifiedAccess>]
module AutoRatios =
    let start = { Steps = 0; Smoothed = Map.empty; Ratios = Map.empty }

    /// A block's LR from the uniform (AdamW) schedule's value x at a step: x + (ratio - 1) (x - floor) above the
    /// floor, x below it. The peak becomes about ratio x base and every block still ends at the one shared floor.
    let scaleAboveFloor (ratio: float) (floor: float) (x: float) = x + (ratio - 1.0) * max 0.0 (x - floor)

    /// One step: fold this step's proxy sharpness per block into exponential moving averages (bias-corrected);
    /// every `every` steps, set each block's ratio to clamp((S_norm / S_b)^alpha, 1, rMax). Norms keep ratio 1.
    let observe (smoothing: float) (alpha: float) (rMax: float) (every: int) (sharpness: (BlockKind * float) list) (state: AutoRatioState) =
        let steps = state.Steps + 1
        let smoothed =
            sharpness
            |> List.fold (fun (m: Map<BlockKind, float>) (k, s) ->
                let previous = m |> Map.tryFind k |> Option.defaultValue 0.0
                m.Add(k, smoothing * previous + (1.0 - smoothing) * s)) state.Smoothed
        let corrected k = smoothed[k] / (1.0 - smoothing ** float steps)
        let ratios =
            if steps % every <> 0 || not (smoothed.ContainsKey Norm) then state.Ratios
            else
                smoothed
                |> Map.map (fun k _ -> if k = Norm then 1.0 else Sharpness.adaptiveRatio alpha rMax (corrected Norm) (corrected k))
        { Steps = steps; Smoothed = smoothed; Ratios = ratios }

    /// The ratio in force for a block (1 until the first update).
    let ratioOf (state: AutoRatioState) (kind: BlockKind) = state.Ratios |> Map.tryFind kind |> Option.defaultValue 1.0
