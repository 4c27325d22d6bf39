module internal BlockwiseLR.Core.Tests.AutoRatiosTests

open Expecto
open FsCheck
open FsCheck.FSharp
open BlockwiseLR
open BlockwiseLR.Core
open BlockwiseLR.Core.Tests.Generators

/// A rule with these settings over a batch of `batch` sequences, `micro` per micro-batch.
let private rule alpha maxRatio every smoothing micro batch =
    {
        Alpha = alpha
        MaxRatio = maxRatio
        Every = every
        Settle = 0
        Smoothing = smoothing
        MicroBatch = micro
        Batch = batch
    }

/// An observation whose proxy sharpness B |g|^2 / n is `sharpness`: n = B, |g|^2 = sharpness.
let private measuredAt batch (block, sharpness) =
    {
        Block = block
        Squared = sharpness
        Parameters = int64 batch
        SmallSquared = None
    }

[<Tests>]
let tests =
    testList
        "AutoRatios"
        [
            test "ratios start uniform, update every K steps from the bias-corrected averages, norms stay at 1" {
                let observe = AutoRatios.observe (rule 1.0 10.0 2 0.5 8 8)

                let measured =
                    [ Norm, 8.0; Embedding, 1.0; AttentionVO, 4.0; AttentionQK, 0.1 ]
                    |> List.map (measuredAt 8)

                let once = observe measured AutoRatios.start
                Expect.equal (AutoRatios.ratioOf once Embedding) 1.0 "no update before K steps"
                let twice = observe measured once

                Expect.equal
                    (AutoRatios.ratioOf twice Embedding)
                    8.0
                    "S_norm / S_emb (constant input: the corrected mean is exact)"

                Expect.equal (AutoRatios.ratioOf twice AttentionVO) 2.0 "8 / 4"
                Expect.equal (AutoRatios.ratioOf twice AttentionQK) 10.0 "clamped at rMax"
                Expect.equal (AutoRatios.ratioOf twice Norm) 1.0 "norms"
            }

            test "the proxy sharpness is B |g_b|^2 / #params(b)" {
                // Norm: 4 x 2 / 1 = 8; Embedding: 4 x 3 / 12 = 1: ratio 8 at alpha 1.
                let measured =
                    [
                        {
                            Block = Norm
                            Squared = 2.0
                            Parameters = 1L
                            SmallSquared = None
                        }
                        {
                            Block = Embedding
                            Squared = 3.0
                            Parameters = 12L
                            SmallSquared = None
                        }
                    ]

                let state = AutoRatios.observe (rule 1.0 100.0 1 0.0 4 4) measured AutoRatios.start

                Expect.floatClose
                    Accuracy.veryHigh
                    (AutoRatios.ratioOf state Embedding)
                    8.0
                    "(4 x 2 / 1) / (4 x 3 / 12)"
            }

            test "the noise scale is tr(Sigma) / |G|^2 from a small and a whole batch (closed form)" {
                // E|g_b|^2 = |G|^2 + tr(Sigma) / b: with |G|^2 = 2 and tr(Sigma) = 12, b = 4, B = 16.
                let g2, trace = 2.0, 12.0
                let small, big = g2 + trace / 4.0, g2 + trace / 16.0
                Expect.floatClose Accuracy.veryHigh (NoiseScale.simple 4 16 small big).Value 6.0 "B_noise = 12 / 2"
                Expect.isNone (NoiseScale.simple 4 16 8.0 1.0) "B |g_B|^2 below b |g_b|^2: no signal estimate"
            }

            test
                "with micro-batches the ratio is (S'_norm / S'_b)^alpha, S' = S (1 + B_noise / B), a block without a \
                 signal estimate the noisiest" {
                // Norm: |G|^2 = 4, tr = 0 (no noise); Embedding: |G|^2 = 1, tr = 16 (B_noise 16); QK: signal estimate
                // <= 0. Parameter counts make the proxy sharpness 8 (norm), 1 (embedding) and 1 (QK) at B = 16.
                let squares g2 trace = g2 + trace / 4.0, g2 + trace / 16.0
                let (ns, nb), (es, eb) = squares 4.0 0.0, squares 1.0 16.0

                let measured =
                    [
                        {
                            Block = Norm
                            Squared = nb
                            Parameters = 8L
                            SmallSquared = Some ns
                        }
                        {
                            Block = Embedding
                            Squared = eb
                            Parameters = 32L
                            SmallSquared = Some es
                        }
                        {
                            Block = AttentionQK
                            Squared = 1.0
                            Parameters = 16L
                            SmallSquared = Some 8.0
                        }
                    ]

                let state = AutoRatios.observe (rule 1.0 100.0 1 0.5 4 16) measured AutoRatios.start
                // Embedding: (8 x 1) / (1 x (1 + 16/16)) = 4 instead of 8; QK takes the largest factor measured (2).
                // Then the regime factor B / (B + B_noise) of the whole model: summed squared norms 17 (4 + 5 + 8)
                // over 4 sequences and 7 (4 + 2 + 1) over 16 give |G|^2 = (16 x 7 - 4 x 17) / 12 = 11/3 and
                // tr(Sigma) = 10 / (1/4 - 1/16) = 160/3, so B_noise = 160/11 and the factor 16 / (16 + 160/11) = 11/21.
                let g = 11.0 / 21.0

                Expect.floatClose
                    Accuracy.veryHigh
                    (AutoRatios.ratioOf state Embedding)
                    (1.0 + 3.0 * g)
                    "halved, then g"

                Expect.floatClose
                    Accuracy.veryHigh
                    (AutoRatios.ratioOf state AttentionQK)
                    (1.0 + 3.0 * g)
                    "the noisiest"

                let plain =
                    AutoRatios.observe (rule 1.0 100.0 1 0.5 16 16) measured AutoRatios.start

                Expect.floatClose
                    Accuracy.veryHigh
                    (AutoRatios.ratioOf plain Embedding)
                    8.0
                    "no micro-batches: the sharpness rule alone"
            }

            test "ratios stay 1 until the warmup and the moving averages' memory have passed" {
                Expect.equal (AutoRatios.settle 15 0.9) 25 "15 warmup steps + 1 / (1 - 0.9)"

                let measured = [ measuredAt 4 (Norm, 8.0); measuredAt 4 (Embedding, 1.0) ]

                let rule =
                    { rule 1.0 100.0 10 0.9 4 4 with
                        Settle = 25
                    }

                let ratios =
                    [ 1..40 ]
                    |> List.scan (fun s _ -> AutoRatios.observe rule measured s) AutoRatios.start
                    |> List.map (fun s -> s.Steps, AutoRatios.ratioOf s Embedding)

                Expect.all
                    (ratios |> List.filter (fun (t, _) -> t < 30))
                    (fun (_, r) -> r = 1.0)
                    "1 through step 29 (steps 10 and 20 come before the settling ends)"

                Expect.floatClose Accuracy.veryHigh (snd ratios[30]) 8.0 "set at step 30, the first update after 25"
            }

            test "the regime factor is B / (B + B_noise): near 0 far below the noise scale, near 1 far above it" {
                // |G|^2 = 1 and tr(Sigma) = 64 (B_noise 64 sequences), measured at b = B/2.
                let at (big: int) =
                    let small = big / 2

                    let noise =
                        List.fold
                            (fun s _ ->
                                NoiseScale.observe
                                    0.9
                                    [ FeedForward, 1.0 + 64.0 / float small, 1.0 + 64.0 / float big ]
                                    s)
                            NoiseScale.start
                            [ 1..5 ]

                    AutoRatios.regime small big noise

                Expect.floatClose Accuracy.high (at 4) (4.0 / 68.0) "B = B_noise / 16"
                Expect.floatClose Accuracy.high (at 64) 0.5 "B = B_noise"
                Expect.floatClose Accuracy.high (at 1024) (1024.0 / 1088.0) "B = 16 B_noise"
                Expect.equal (AutoRatios.regime 2 4 NoiseScale.start) 0.0 "nothing measured: the base LR"
            }

            testPropertyWithConfig
                config
                "a ratio held by auto gives the fixed ratios' LR at every step, floor and peak included"
            <| Prop.forAll
                (Arb.fromGen (Gen.zip3 (Gen.choose (10, 100)) (Gen.choose (1, 9)) (Gen.elements [ 0..6 ])))
                (fun (total, warmup, kind) ->
                    let spec =
                        {
                            Kind = Schedule.kindOf (enum<LrSchedule> kind)
                            BaseLr = 1e-3
                            FloorLr = 5e-5
                            WarmupSteps = warmup
                            TotalSteps = total
                            AlphaWarmup = false
                        }

                    let held =
                        { AutoRatios.start with
                            Ratios = Map [ Embedding, 10.0; AttentionQK, 3.5 ]
                        }

                    let fixedRatios =
                        { Ratios.uniform with
                            Embedding = 10.0
                            AttentionQK = 3.5
                        }

                    [ Embedding; AttentionQK; Norm ]
                    |> List.forall (fun block ->
                        let fixedSchedule = Schedule.forBlock spec (Ratios.ratioOf true fixedRatios block)

                        [ 0..total ]
                        |> List.forall (fun t -> AutoRatios.lrAt spec held block t = fixedSchedule t)))
        ]
