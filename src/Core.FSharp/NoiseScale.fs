namespace BlockwiseLR.Core

open BlockwiseLR

open System

/// Weighted moving averages of the squared gradient norm over a small batch and over the whole batch, and of the
/// whole batch's norm itself (the scale that sets each measurement's weight).
type internal NoiseScaleSums =
    {
        /// The smoothed squared gradient norm over the small batch.
        Small: float
        /// The smoothed squared gradient norm over the whole batch.
        Big: float
        /// The moving average of the whole batch's norm itself (the scale that sets each measurement's weight).
        Scale: float
    }

/// What the noise-scale measurement has folded in, per block and for the whole model (docs/method.md section 10).
type internal NoiseScaleState =
    {
        /// Measurements folded in.
        Measured: int
        /// Each block's sums.
        Blocks: Map<BlockKind, NoiseScaleSums>
        /// The whole model's sums.
        Model: NoiseScaleSums
    }

/// The simple gradient-noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, appendix A): how many
/// sequences a batch needs before its gradient is mostly signal. Measured from two batch sizes of one step: the
/// squared norm of the gradient over a small batch of b sequences and over the whole batch of B > b sequences, whose
/// expectations are |G|^2 + tr(Sigma) / b and |G|^2 + tr(Sigma) / B. Both are smoothed across measurements before
/// the ratio is taken (the estimate of one step is too noisy to read alone), as McCandlish et al. do.
[<RequireQualifiedAccess>]
module internal NoiseScale =
    /// B_simple from one pair of squared norms (or from their moving averages, which are linear in them): unbiased
    /// |G|^2 = (B |g_B|^2 - b |g_b|^2) / (B - b) and tr(Sigma) = (|g_b|^2 - |g_B|^2) / (1/b - 1/B). None when the
    /// estimate of |G|^2 is not positive (the noise hides the signal); tr(Sigma) below 0 counts as 0. In the unit
    /// of b and B (sequences).
    let simple (small: int) (big: int) (smallSquared: float) (bigSquared: float) =
        let b, bb = float small, float big
        let signal = (bb * bigSquared - b * smallSquared) / (bb - b)
        let trace = max 0.0 ((smallSquared - bigSquared) / (1.0 / b - 1.0 / bb))

        if small >= 1 && big > small && signal > 0.0 && Double.IsFinite trace then
            Some(trace / signal)
        else
            None

    /// Measurements whose whole-batch squared norm exceeds this many times the running mean count as this many
    /// times it (their two norms scaled down alike): a loss spike weighs like an ordinary step.
    [<Literal>]
    let SpikeCap = 3.0

    let private empty = { Small = 0.0; Big = 0.0; Scale = 0.0 }

    /// Nothing measured yet.
    let start =
        {
            Measured = 0
            Blocks = Map.empty
            Model = empty
        }

    /// One measurement into one set of sums. Each is weighted by 1 / (the running mean of the whole-batch norm
    /// before it), a weight that does not depend on the measurement itself, so the ratio of the averages stays an
    /// estimate of E|g_b|^2 / E|g_B|^2 (weighting by the same step's norm would not be: the ratio of the two norms
    /// of one step is biased upwards when the batch is within a few B_noise). Gradients that shrink a
    /// hundredfold over training still weigh alike; a spike above `SpikeCap` times the mean is capped.
    let private fold (smoothing: float) (measured: int) (sums: NoiseScaleSums) (small: float) (big: float) =
        let ema previous value =
            smoothing * previous + (1.0 - smoothing) * value

        let mean =
            if measured = 0 || sums.Scale <= 0.0 then
                big
            else
                sums.Scale / (1.0 - smoothing ** float measured)

        let weight =
            if big <= 0.0 then 0.0
            elif mean <= 0.0 then 1.0 / big
            else min (1.0 / mean) (SpikeCap / big)

        {
            Small = ema sums.Small (weight * small)
            Big = ema sums.Big (weight * big)
            Scale = ema sums.Scale (min big (SpikeCap * mean))
        }

    /// Folds one measurement in: per block, the squared norm over the small batch and over the whole batch.
    let observe (smoothing: float) (measured: (BlockKind * float * float) list) (state: NoiseScaleState) =
        let blocks =
            measured
            |> List.fold
                (fun (m: Map<BlockKind, NoiseScaleSums>) (k, small, big) ->
                    let sums = m.TryFind k |> Option.defaultValue empty
                    m.Add(k, fold smoothing state.Measured sums small big))
                state.Blocks

        let smallSum, bigSum =
            measured |> List.sumBy (fun (_, s, _) -> s), measured |> List.sumBy (fun (_, _, b) -> b)

        {
            Measured = state.Measured + 1
            Blocks = blocks
            Model = fold smoothing state.Measured state.Model smallSum bigSum
        }

    let private read (small: int) (big: int) (sums: NoiseScaleSums) =
        if sums.Big > 0.0 then
            simple small big (sums.Small / sums.Big) 1.0
        else
            None

    /// A block's B_simple in sequences (None: not measured, or no signal estimate).
    let ofBlock (small: int) (big: int) (state: NoiseScaleState) (kind: BlockKind) =
        state.Blocks.TryFind kind |> Option.bind (read small big)

    /// The whole model's B_simple in sequences: |G|^2 and tr(Sigma) are sums over the blocks, so it is read from
    /// the summed squared norms.
    let ofModel (small: int) (big: int) (state: NoiseScaleState) = read small big state.Model
