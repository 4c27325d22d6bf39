module internal BlockwiseLR.Core.Tests.ScheduleTests

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open BlockwiseLR
open BlockwiseLR.Core
open BlockwiseLR.Core.Tests.Generators

let tol = 1e-12

let close (a: float) (b: float) =
    abs (a - b) <= tol * max 1.0 (max (abs a) (abs b))

let decaying =
    Gen.elements
        [
            WarmupCosine
            WarmupLinear
            WarmupStableDecay(0.2, Linear)
            WarmupStableDecay(0.3, Cosine)
            WarmupStableDecay(0.25, OneMinusSqrt)
            WsdRatioAnneal
        ]

let anyKind = scheduleKind

let cases kinds alpha = Arb.fromGen (scheduleCase kinds alpha)

let blocks (c: ScheduleCase) =
    BlockKind.all |> List.map (fun k -> k, Ratios.ratioOf false c.Ratios k)

let steps (c: ScheduleCase) = [ 0 .. c.Spec.TotalSteps + 3 ]

[<Tests>]
let tests =
    testList
        "Schedule"
        [
            test "reproduces every LR of the optimizer fixture (W = 2, T = 6, base 1e-3, floor 5e-5)" {
                let golden = Safetensors.read (Safetensors.dataPath "optim-golden.safetensors")

                let ratios =
                    Ratios.parse "emb=10,head=10,qk=8,vo=4,ffn=6,norm=1"
                    |> Result.defaultWith failwith

                let spec =
                    {
                        Kind = WarmupCosine
                        BaseLr = 1e-3
                        FloorLr = 5e-5
                        WarmupSteps = 2
                        TotalSteps = 6
                        AlphaWarmup = false
                    }

                let groups =
                    [
                        "emb", Embedding
                        "head", OutputHead
                        "qk", AttentionQK
                        "vo", AttentionVO
                        "ffn", FeedForward
                        "norm", Norm
                    ]

                let mutable checkedCount = 0

                for t in 0..5 do
                    for group, kind in groups do
                        let expected =
                            Safetensors.toFloats golden[sprintf "lr/blockwise_adamw/%d/%s" t group]
                            |> Array.exactlyOne

                        let actual = Schedule.forBlock spec (Ratios.ratioOf false ratios kind) t
                        Expect.floatClose Accuracy.veryHigh actual expected (sprintf "step %d group %s" t group)
                        checkedCount <- checkedCount + 1

                Expect.equal checkedCount 36 "all 36 recorded LRs"
            }

            test "cosine convention by hand: peak at t = W-1, floor at t = T" {
                let spec =
                    {
                        Kind = WarmupCosine
                        BaseLr = 1.0
                        FloorLr = 0.1
                        WarmupSteps = 4
                        TotalSteps = 10
                        AlphaWarmup = false
                    }

                let lr = Schedule.forBlock spec 2.0
                Expect.equal [ lr 0; lr 1; lr 2; lr 3; lr 4 ] [ 0.5; 1.0; 1.5; 2.0; 2.0 ] "warmup"
                Expect.floatClose Accuracy.veryHigh (lr 7) (0.1 + 1.9 * 0.5) "midpoint of the cosine"
                Expect.floatClose Accuracy.veryHigh (lr 10) 0.1 "floor at T"
            }

            test "the algebra composes: warmup, a decay shape and piecewise" {
                let s =
                    Schedule.piecewise
                        [ 3.0, Schedule.linearWarmup 3.0 6.0 ]
                        (Schedule.decay OneMinusSqrt 6.0 2.0 3.0 4.0)

                Expect.equal
                    [ s 0; s 1; s 2; s 3; s 4; s 7; s 9 ]
                    [ 2.0; 4.0; 6.0; 6.0; 6.0 - 4.0 * 0.5; 2.0; 2.0 ]
                    "piecewise"
            }

            test "WSD with ratio annealing: ratio until T/3, back to 1 by 2T/3, then linear to the floor" {
                let spec =
                    {
                        Kind = WsdRatioAnneal
                        BaseLr = 1.0
                        FloorLr = 0.1
                        WarmupSteps = 0
                        TotalSteps = 30
                        AlphaWarmup = false
                    }

                let lr = Schedule.forBlock spec 8.0
                Expect.equal [ lr 0; lr 9; lr 10 ] [ 8.0; 8.0; 8.0 ] "hold the ratio"
                Expect.floatClose Accuracy.veryHigh (lr 15) 4.5 "halfway back to ratio 1"
                Expect.floatClose Accuracy.veryHigh (lr 20) 1.0 "ratio 1 at 2T/3"
                Expect.floatClose Accuracy.veryHigh (lr 25) 0.55 "linear decay"
                Expect.floatClose Accuracy.veryHigh (lr 30) 0.1 "floor at T"
            }

            test "validation refuses what cannot run, with the reason" {
                let ok =
                    {
                        Kind = WarmupCosine
                        BaseLr = 1e-3
                        FloorLr = 5e-5
                        WarmupSteps = 10
                        TotalSteps = 100
                        AlphaWarmup = false
                    }

                let reason spec =
                    match Schedule.validate [ 10.0; 1.0 ] spec with
                    | Error e -> e
                    | Ok _ -> failtestf "accepted %A" spec

                Expect.isOk (Schedule.validate [ 10.0; 1.0 ] ok) "valid"
                Expect.stringContains (reason { ok with WarmupSteps = 200 }) "exceeds the run length" "warmup too long"

                Expect.stringContains
                    (reason
                        { ok with
                            AlphaWarmup = true
                            WarmupSteps = 11
                        })
                    "alpha mode"
                    "alpha warmup 10 x 11 > 100"

                Expect.stringContains (reason { ok with FloorLr = 2e-3 }) "above the lowest block peak" "floor too high"
                Expect.stringContains (reason { ok with BaseLr = nan }) "base LR" "NaN base"
                Expect.stringContains (reason { ok with TotalSteps = 0 }) "total steps" "empty run"

                Expect.stringContains
                    (reason
                        { ok with
                            Kind = WarmupStableDecay(1.5, Linear)
                        })
                    "decay fraction"
                    "fraction"

                Expect.isError (Names.parse "schedule" Names.schedules "cosin") "unknown kind"
            }

            testPropertyWithConfig config "uniform ratios: one LR for every block at every step"
            <| Prop.forAll (cases anyKind false) (fun c ->
                let lrs =
                    BlockKind.all
                    |> List.map (fun k -> Schedule.forBlock c.Spec (Ratios.ratioOf false Ratios.uniform k))

                steps c
                |> List.forall (fun t -> lrs |> List.forall (fun lr -> lr t = lrs.Head t)))

            testPropertyWithConfig config "warmup rises monotonically inside [0, peak] and reaches the peak at t = W-1"
            <| Prop.forAll (cases anyKind false) (fun c ->
                let w = c.Spec.WarmupSteps

                blocks c
                |> List.forall (fun (_, ratio) ->
                    let lr = Schedule.forBlock c.Spec ratio
                    let peak = ratio * c.Spec.BaseLr
                    let warm = [ for t in 0 .. w - 1 -> lr t ]

                    warm |> List.forall (fun x -> x > 0.0 && x <= peak * (1.0 + tol))
                    && warm |> List.pairwise |> List.forall (fun (a, b) -> a < b)
                    && (w = 0 || close (lr (w - 1)) peak)))

            testPropertyWithConfig config "after warmup: inside [floor, peak] and never rising"
            <| Prop.forAll (cases anyKind false) (fun c ->
                blocks c
                |> List.forall (fun (_, ratio) ->
                    let lr = Schedule.forBlock c.Spec ratio
                    let peak = ratio * c.Spec.BaseLr
                    let after = [ for t in c.Spec.WarmupSteps .. c.Spec.TotalSteps + 3 -> lr t ]

                    after
                    |> List.forall (fun x -> x >= c.Spec.FloorLr * (1.0 - tol) && x <= peak * (1.0 + tol))
                    && after |> List.pairwise |> List.forall (fun (a, b) -> b <= a * (1.0 + tol))))

            testPropertyWithConfig config "every decaying block reaches the ONE shared floor at t = T and stays there"
            <| Prop.forAll (cases decaying false) (fun c ->
                blocks c
                |> List.forall (fun (_, ratio) ->
                    let lr = Schedule.forBlock c.Spec ratio

                    [ c.Spec.TotalSteps .. c.Spec.TotalSteps + 3 ]
                    |> List.forall (fun t -> close (lr t) c.Spec.FloorLr)))

            testPropertyWithConfig config "continuous at phase boundaries: the warmup's last value is the decay's first"
            <| Prop.forAll (cases anyKind false) (fun c ->
                let w = c.Spec.WarmupSteps

                w = 0
                || blocks c
                   |> List.forall (fun (_, ratio) ->
                       let lr = Schedule.forBlock c.Spec ratio
                       close (lr (w - 1)) (lr w)))

            testPropertyWithConfig config "cosine and linear decays move by at most their analytic slope per step"
            <| Prop.forAll (cases (Gen.elements [ WarmupCosine; WarmupLinear ]) false) (fun c ->
                blocks c
                |> List.forall (fun (_, ratio) ->
                    let lr = Schedule.forBlock c.Spec ratio
                    let peak = ratio * c.Spec.BaseLr
                    let span = float (c.Spec.TotalSteps - c.Spec.WarmupSteps)

                    let slope =
                        (peak - c.Spec.FloorLr) / span
                        * (if c.Spec.Kind = WarmupCosine then Math.PI / 2.0 else 1.0)

                    [ c.Spec.WarmupSteps .. c.Spec.TotalSteps ]
                    |> List.pairwise
                    |> List.forall (fun (a, b) -> abs (lr b - lr a) <= slope * (1.0 + 1e-9))))

            testPropertyWithConfig config "each block's highest LR is exactly ratio x base"
            <| Prop.forAll (cases anyKind false) (fun c ->
                blocks c
                |> List.forall (fun (_, ratio) ->
                    let lr = Schedule.forBlock c.Spec ratio
                    close (steps c |> List.map lr |> List.max) (ratio * c.Spec.BaseLr)))

            testPropertyWithConfig config "alpha mode: every block warms up with the base slope, base x (t+1)/W"
            <| Prop.forAll (cases anyKind true) (fun c ->
                let w = c.Spec.WarmupSteps
                let shortest = blocks c |> List.map (fun (_, r) -> r * float w) |> List.min

                blocks c
                |> List.forall (fun (_, ratio) ->
                    let lr = Schedule.forBlock c.Spec ratio

                    [
                        for t in 0 .. w - 1 do
                            if float (t + 1) <= shortest then
                                yield t
                    ]
                    |> List.forall (fun t -> close (lr t) (c.Spec.BaseLr * float (t + 1) / float w))))

            testPropertyWithConfig config "alpha mode: a block reaches its peak at ratio x W"
            <| Prop.forAll (cases (Gen.elements [ WarmupCosine; WarmupLinear ]) true) (fun c ->
                blocks c
                |> List.forall (fun (_, ratio) ->
                    let lr = Schedule.forBlock c.Spec ratio
                    let wBlock = ratio * float c.Spec.WarmupSteps
                    let peakStep = int (ceil wBlock) - 1

                    c.Spec.WarmupSteps = 0
                    || peakStep < 0
                    || close (lr peakStep) (ratio * c.Spec.BaseLr)))

            testPropertyWithConfig config "WSD with ratio annealing: all blocks share one LR from 2T/3 on"
            <| Prop.forAll (cases (Gen.constant WsdRatioAnneal) false) (fun c ->
                let lrs = blocks c |> List.map (fun (_, r) -> Schedule.forBlock c.Spec r)
                let from = int (ceil (2.0 * float c.Spec.TotalSteps / 3.0))

                [ from .. c.Spec.TotalSteps + 3 ]
                |> List.forall (fun t -> lrs |> List.forall (fun lr -> close (lr t) (lrs.Head t))))

            testPropertyWithConfig config "milestones are sorted, distinct, within [0, T], and include 0, W-1, W and T"
            <| Prop.forAll (Arb.fromGen (Gen.zip (scheduleCase anyKind false) (Gen.choose (0, 30)))) (fun (c, points) ->
                let m = Schedule.milestones c.Spec points

                let required =
                    [ 0; max 0 (c.Spec.WarmupSteps - 1); c.Spec.WarmupSteps; c.Spec.TotalSteps ]

                m = (List.sort (List.distinct m))
                && m |> List.forall (fun t -> t >= 0 && t <= c.Spec.TotalSteps)
                && required |> List.forall (fun t -> List.contains t m))
        ]
