namespace BlockwiseLR.Core

open BlockwiseLR

open System

/// The smoothed sharpness per block behind `--ratios auto`, the ratios last set from it, the smoothed squared
/// gradient norms of a small and the whole batch behind the per-block noise correction, and the whole model's
/// noise scale behind the regime factor (both empty without the noise measurement).
type internal AutoRatioState =
    {
        /// Steps observed so far.
        Steps: int
        /// Each block's smoothed proxy sharpness.
        Smoothed: Map<BlockKind, float>
        /// The ratios last set (empty before the first update: every ratio 1).
        Ratios: Map<BlockKind, float>
        /// Each block's smoothed squared gradient norm over the small batch (the noise correction; empty without it).
        SmallSquared: Map<BlockKind, float>
        /// Each block's smoothed squared gradient norm over the whole batch (the noise correction; empty without it).
        BigSquared: Map<BlockKind, float>
        /// The whole model's noise-scale measurement behind the regime factor.
        Noise: NoiseScaleState
    }

/// How auto ratios read the run (docs/method.md section 9).
type internal AutoRatioRule =
    {
        /// r_b = clamp((S_norm / S_b)^Alpha, 1, MaxRatio).
        Alpha: float
        /// The largest ratio a block may get.
        MaxRatio: float
        /// Steps between ratio updates.
        Every: int
        /// No update before this many steps (`settle`): every ratio stays 1 until then.
        Settle: int
        /// The moving-average factor of the measured quantities.
        Smoothing: float
        /// Sequences in the small batch of the noise measurement; equal to Batch: no noise measurement, no noise
        /// correction and no regime factor.
        MicroBatch: int
        /// Sequences in the step (the whole batch).
        Batch: int
    }

/// One step's measurements per block: the squared norm of the whole batch's gradient, the block's parameter
/// count and, with micro-batches, the squared norm of the first micro-batch's gradient.
type internal AutoRatioObservation =
    {
        /// The block measured.
        Block: BlockKind
        /// The squared norm of the block's gradient over the whole batch.
        Squared: float
        /// The block's parameter count.
        Parameters: int64
        /// The squared norm of the block's gradient over the small batch (None without the noise measurement).
        SmallSquared: float option
    }

/// Sharpness-adaptive ratios, the whole rule in one place (docs/method.md section 9): the paper's proxy sharpness
/// per block, smoothed by a bias-corrected moving average, corrected for gradient noise with micro-batches, and
/// turned into ratios every few steps. A ratio r gives a block the LR that fixed ratios at r give it
/// (`Schedule.forBlock`), so the same r means the same peak whether it was measured or chosen.
[<RequireQualifiedAccess>]
module internal AutoRatios =
    /// No measurement yet: every ratio 1.
    let start =
        {
            Steps = 0
            Smoothed = Map.empty
            Ratios = Map.empty
            SmallSquared = Map.empty
            BigSquared = Map.empty
            Noise = NoiseScale.start
        }

    /// The steps before the first ratio update: the warmup, then 1 / (1 - smoothing) steps (the moving averages'
    /// memory) past it. The gradients of the first steps (large, coherent, measured while the LR is still rising)
    /// overstate the disparity and understate the noise; ratios set from them and applied at the peak LR did
    /// damage no later step repaired (docs/sweep/report.md).
    let settle (warmup: int) (smoothing: float) =
        warmup + int (Math.Ceiling(1.0 / (1.0 - smoothing) - 1e-9))

    /// The regime factor B / (B + B_noise), B_noise the whole model's noise scale (NoiseScale.fs): near 0 where the
    /// batch is well below B_noise (the step is mostly noise, its best LR set by the noise, and every block is
    /// better served by the base LR), near 1 well above it (curvature sets the stable LR, and the sharpness ratios
    /// apply in full). No estimate of |G|^2 yet: 0.
    let regime (small: int) (big: int) (noise: NoiseScaleState) =
        match NoiseScale.ofModel small big noise with
        | Some n -> float big / (float big + n)
        | None -> 0.0

    /// The adaptive rule: r_b = clamp((S_norm / S_b)^alpha, 1, rMax). Flatter blocks than the norms get larger
    /// LRs, never less than the base and never more than rMax times it.
    let adaptiveRatio (alpha: float) (rMax: float) (sharpnessNorm: float) (sharpnessBlock: float) =
        if not (sharpnessNorm > 0.0 && sharpnessBlock > 0.0) then
            1.0
        else
            Math.Clamp((sharpnessNorm / sharpnessBlock) ** alpha, 1.0, rMax)

    let private fold (smoothing: float) (state: Map<BlockKind, float>) (measured: (BlockKind * float) list) =
        measured
        |> List.fold
            (fun (m: Map<BlockKind, float>) (k, s) ->
                let previous = m |> Map.tryFind k |> Option.defaultValue 0.0
                m.Add(k, smoothing * previous + (1.0 - smoothing) * s))
            state

    /// Each block's noise factor 1 + B_noise,b / B from the smoothed squared norms (the moving averages' bias
    /// correction cancels in B_noise). A block whose |G|^2 estimate is not positive gets the largest factor
    /// measured (the noisiest); none measured, or no estimate at all: 1 for every block.
    let noiseFactors (small: int) (big: int) (state: AutoRatioState) =
        let factors =
            state.BigSquared
            |> Map.map (fun k bigSq ->
                state.SmallSquared
                |> Map.tryFind k
                |> Option.bind (fun smallSq -> NoiseScale.simple small big smallSq bigSq)
                |> Option.map (fun n -> 1.0 + n / float big))

        let measured = factors |> Map.toList |> List.choose snd
        let noisiest = if measured.IsEmpty then 1.0 else List.max measured

        fun (k: BlockKind) ->
            match factors |> Map.tryFind k with
            | Some(Some f) -> f
            | Some None -> noisiest
            | None -> 1.0

    /// One step: fold this step's proxy sharpness per block (`Sharpness.proxy`) into exponential moving averages
    /// (bias-corrected), and with the noise measurement (MicroBatch < Batch) the squared gradient norms of the
    /// small batch and the whole batch per block; every `Every` steps from `Settle` on, set each block's ratio to
    /// 1 + (clamp((S'_norm / S'_b)^alpha, 1, rMax) - 1) g with S'_b = S_b (1 + B_noise,b / B), the sharpness a
    /// block's step must respect raised by how much of its gradient is noise at this batch size, and
    /// g = B / (B + B_noise) the regime factor (`regime`; 1 without the noise measurement). Norms keep ratio 1.
    let observe (rule: AutoRatioRule) (measured: AutoRatioObservation list) (state: AutoRatioState) =
        let smoothing = rule.Smoothing

        let sharpness =
            measured
            |> List.map (fun m -> m.Block, Sharpness.proxy rule.Batch m.Squared m.Parameters)

        let noise =
            if rule.MicroBatch < rule.Batch then
                measured
                |> List.choose (fun m -> m.SmallSquared |> Option.map (fun small -> m.Block, small, m.Squared))
            else
                []

        let steps = state.Steps + 1
        let smoothed = fold smoothing state.Smoothed sharpness

        let smallSquared =
            fold smoothing state.SmallSquared (noise |> List.map (fun (k, s, _) -> k, s))

        let bigSquared =
            fold smoothing state.BigSquared (noise |> List.map (fun (k, _, b) -> k, b))

        let next =
            { state with
                Steps = steps
                Smoothed = smoothed
                SmallSquared = smallSquared
                BigSquared = bigSquared
                Noise =
                    if noise.IsEmpty then
                        state.Noise
                    else
                        NoiseScale.observe smoothing noise state.Noise
            }

        if
            steps % rule.Every <> 0
            || steps < rule.Settle
            || not (smoothed.ContainsKey Norm)
        then
            next
        else
            let factor =
                if rule.MicroBatch < rule.Batch then
                    noiseFactors rule.MicroBatch rule.Batch next
                else
                    fun _ -> 1.0

            let effective k =
                smoothed[k] / (1.0 - smoothing ** float steps) * factor k

            let g =
                if rule.MicroBatch < rule.Batch then
                    regime rule.MicroBatch rule.Batch next.Noise
                else
                    1.0

            let ratio k =
                if k = Norm then
                    1.0
                else
                    1.0
                    + (adaptiveRatio rule.Alpha rule.MaxRatio (effective Norm) (effective k) - 1.0)
                      * g

            { next with
                Ratios = smoothed |> Map.map (fun k _ -> ratio k)
            }

    /// The ratio in force for a block (1 until the first update).
    let ratioOf (state: AutoRatioState) (kind: BlockKind) =
        state.Ratios |> Map.tryFind kind |> Option.defaultValue 1.0

    /// A block's LR at step t under auto ratios: the schedule of a block whose ratio is the one in force, the
    /// same rule fixed ratios follow.
    let lrAt (spec: ScheduleSpec) (state: AutoRatioState) (kind: BlockKind) (t: int) =
        Schedule.forBlock spec (ratioOf state kind) t
