namespace BlockwiseLR.Core

open BlockwiseLR

open System

/// A learning-rate schedule: the LR used during optimizer step t (t = 0, 1, 2, ...).
type internal Schedule = int -> float

/// How a decay phase goes from its start LR to its end LR; p is the phase's progress in [0, 1].
type internal DecayShape =
    /// (1 + cos(pi p)) / 2
    | Cosine
    /// 1 - p
    | Linear
    /// 1 - sqrt p (the WSD paper's cool-down)
    | OneMinusSqrt

/// The recipe's shape after warmup.
type internal ScheduleKind =
    /// Cosine from the peak to the shared floor, reached at t = T (the paper's default, llm.c's convention).
    | WarmupCosine
    /// Linear from the peak to the shared floor at t = T.
    | WarmupLinear
    /// Hold the peak after warmup.
    | WarmupConstant
    /// Warmup, stable at the peak, then decay over the last `decayFraction` of the run.
    | WarmupStableDecay of decayFraction: float * shape: DecayShape
    /// The official WSD variant (docs/method.md section 3): warm up to ratio x base, hold until T/3, anneal the
    /// ratio linearly back to 1 by 2T/3, then decay linearly to the floor at T.
    | WsdRatioAnneal

/// A schedule's description: its kind, base LR, floor, warmup and length; each block's schedule follows from it and the
/// block's ratio.
type internal ScheduleSpec =
    {
        /// The shape after warmup.
        Kind: ScheduleKind
        /// The AdamW LR; a block's peak is its ratio times this.
        BaseLr: float
        /// The ONE floor every block decays to (official recipe: BaseLr / 20).
        FloorLr: float
        /// Steps of linear warmup from 0 to the peak.
        WarmupSteps: int
        /// Steps in the whole run (T).
        TotalSteps: int
        /// "alpha" mode: a block's warmup is ratio times longer, so every block rises with the same slope.
        AlphaWarmup: bool
    }

/// The schedule algebra: warmup, decays, the recipes behind each schedule name, and checks.
[<RequireQualifiedAccess>]
module internal Schedule =
    // ---- The algebra: small schedules in absolute step time, and ways to combine them. ----

    /// `lr` at every step.
    let constant (lr: float) : Schedule = fun _ -> lr

    /// llm.c's warmup: peak x (t+1) / steps, capped at the peak. `steps` may be fractional (alpha mode).
    let linearWarmup (steps: float) (peak: float) : Schedule =
        fun t -> peak * min 1.0 (float (t + 1) / steps)

    /// The fraction of the way from the end LR to the start LR a decay of `shape` keeps at `progress` in [0, 1] (1 at
    /// 0, 0 at 1).
    let shapeFactor shape (progress: float) =
        match shape with
        | Cosine -> (1.0 + cos (Math.PI * progress)) / 2.0
        | Linear -> 1.0 - progress
        | OneMinusSqrt -> 1.0 - sqrt progress

    /// From `fromLr` at step `start` to `toLr` at step `start + length`, flat outside that span.
    let decay shape (fromLr: float) (toLr: float) (start: float) (length: float) : Schedule =
        fun t ->
            let progress =
                if length <= 0.0 then
                    1.0
                else
                    Math.Clamp((float t - start) / length, 0.0, 1.0)

            toLr + (fromLr - toLr) * shapeFactor shape progress

    /// Each phase is used while t < its end step; `last` afterwards. Phases see absolute step numbers.
    let piecewise (phases: (float * Schedule) list) (last: Schedule) : Schedule =
        fun t ->
            match phases |> List.tryFind (fun (phaseEnd, _) -> float t < phaseEnd) with
            | Some(_, schedule) -> schedule t
            | None -> last t

    // ---- The recipe: one schedule per block, peaks = ratio x base, one shared floor. ----

    /// The warmup length of a block with this ratio.
    let warmupOf (spec: ScheduleSpec) (ratio: float) =
        if spec.AlphaWarmup then
            ratio * float spec.WarmupSteps
        else
            float spec.WarmupSteps

    /// The schedule of a block whose peak-LR ratio is `ratio`. With W warmup steps and T total steps:
    /// lr = peak (t+1)/W while t < W, then floor + (peak - floor) (1 + cos(pi (t-W)/(T-W)))/2 (cosine kind),
    /// so the peak is reached at t = W-1 and the floor at t = T.
    let forBlock (spec: ScheduleSpec) (ratio: float) : Schedule =
        let peak = ratio * spec.BaseLr
        let floor = spec.FloorLr
        let total = float spec.TotalSteps
        let w = warmupOf spec ratio
        let warm = w, linearWarmup w peak

        match spec.Kind with
        | WarmupCosine -> piecewise [ warm ] (decay Cosine peak floor w (total - w))
        | WarmupLinear -> piecewise [ warm ] (decay Linear peak floor w (total - w))
        | WarmupConstant -> piecewise [ warm ] (constant peak)
        | WarmupStableDecay(fraction, shape) ->
            let decayStart = total - fraction * total
            piecewise [ warm; decayStart, constant peak ] (decay shape peak floor decayStart (total - decayStart))
        | WsdRatioAnneal ->
            let third = total / 3.0

            piecewise
                [
                    warm
                    third, constant peak
                    2.0 * third, decay Linear peak spec.BaseLr third third
                ]
                (decay Linear spec.BaseLr floor (2.0 * third) third)

    /// The official recipe's floor: BaseLr / 20.
    let officialFloor (baseLr: float) = baseLr / 20.0

    /// Checks the spec against the ratios it will be used with; a refusal names the field it is about.
    let validateFields (ratios: float list) (spec: ScheduleSpec) : Result<ScheduleSpec, ScheduleField * string> =
        let longestWarmup = (1.0 :: ratios) |> List.map (warmupOf spec) |> List.max
        let lowestPeak = (1.0 :: ratios) |> List.min |> (*) spec.BaseLr

        let warmupLimit, limitName =
            match spec.Kind with
            | WarmupStableDecay(fraction, _) -> float spec.TotalSteps * (1.0 - fraction), "the start of the decay"
            | WsdRatioAnneal -> float spec.TotalSteps / 3.0, "a third of the run"
            | _ -> float spec.TotalSteps, "the run length"

        let problem =
            function
            | Error e -> e
            | Ok() -> null

        let lrProblem = problem (OptionRanges.check "lr" spec.BaseLr)
        let floorProblem = problem (OptionRanges.check "floor" spec.FloorLr)

        if not (isNull lrProblem) then
            Error(ScheduleField.BaseLr, sprintf "base LR %g %s" spec.BaseLr lrProblem)
        elif not (isNull floorProblem) then
            Error(ScheduleField.FloorLr, sprintf "floor LR %g %s" spec.FloorLr floorProblem)
        elif spec.FloorLr > lowestPeak then
            Error(
                ScheduleField.FloorLr,
                sprintf "floor LR %g is above the lowest block peak %g; lower the floor" spec.FloorLr lowestPeak
            )
        elif spec.TotalSteps < 1 then
            Error(ScheduleField.TotalSteps, sprintf "total steps %d must be >= 1" spec.TotalSteps)
        elif spec.WarmupSteps < 0 then
            Error(ScheduleField.WarmupSteps, sprintf "warmup steps %d must be >= 0" spec.WarmupSteps)
        else
            match spec.Kind with
            | WarmupStableDecay(fraction, _) when not (fraction > 0.0 && fraction <= 1.0) ->
                Error(ScheduleField.Kind, sprintf "WSD decay fraction %g must be in (0, 1]" fraction)
            | _ when longestWarmup > warmupLimit ->
                Error(
                    ScheduleField.WarmupSteps,
                    sprintf
                        "warmup of %g steps%s exceeds %s (%g steps); shorten the warmup or lengthen the run"
                        longestWarmup
                        (if spec.AlphaWarmup then
                             " (alpha mode: ratio x warmup)"
                         else
                             "")
                        limitName
                        warmupLimit
                )
            | _ -> Ok spec

    /// Checks the spec against the ratios it will be used with (the longest alpha warmup must fit the run).
    let validate (ratios: float list) (spec: ScheduleSpec) : Result<ScheduleSpec, string> =
        validateFields ratios spec |> Result.mapError snd

    /// The recipe behind each schedule name: `wsd` cools down linearly over the last 20%, `wsd-cosine` and
    /// `wsd-1-sqrt` with those shapes, `wsd-anneal` is the official ratio-annealing variant.
    let kindOf (schedule: LrSchedule) : ScheduleKind =
        match schedule with
        | LrSchedule.Linear -> WarmupLinear
        | LrSchedule.Constant -> WarmupConstant
        | LrSchedule.Wsd -> WarmupStableDecay(0.2, Linear)
        | LrSchedule.WsdCosine -> WarmupStableDecay(0.2, Cosine)
        | LrSchedule.Wsd1Sqrt -> WarmupStableDecay(0.2, OneMinusSqrt)
        | LrSchedule.WsdAnneal -> WsdRatioAnneal
        | _ -> WarmupCosine

    /// The default warmup: 2% of the run, at least one step.
    let defaultWarmup (totalSteps: int) = max 1 (totalSteps / 50)

    /// Steps worth printing for a run: start, end of warmup, evenly spaced points, the last step, and T.
    let milestones (spec: ScheduleSpec) (points: int) : int list =
        let total = spec.TotalSteps

        let spaced =
            [
                for i in 0 .. max 1 points -> int (round (float total * float i / float (max 1 points)))
            ]

        [ 0; max 0 (spec.WarmupSteps - 1); spec.WarmupSteps; total - 1; total ] @ spaced
        |> List.filter (fun t -> t >= 0 && t <= total)
        |> List.distinct
        |> List.sort
