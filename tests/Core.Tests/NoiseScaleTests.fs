module internal BlockwiseLR.Core.Tests.NoiseScaleTests

open System
open Expecto
open BlockwiseLR
open BlockwiseLR.Core

/// The expected squared norms of the mean gradient over n samples when the true gradient has squared norm g2 and
/// the per-sample gradients have covariance of trace `trace`: E|g_n|^2 = |G|^2 + tr(Sigma) / n.
let private expected g2 trace (n: int) = g2 + trace / float n

/// A normal draw (Box-Muller) from a seeded generator.
let private normal (random: Random) =
    sqrt (-2.0 * log (1.0 - random.NextDouble()))
    * cos (2.0 * Math.PI * random.NextDouble())

[<Tests>]
let tests =
    testList
        "noise scale"
        [
            testProperty "from expected squared norms, B_simple is tr(Sigma) / |G|^2 exactly (closed form)"
            <| fun
                   (g: FsCheck.NormalFloat)
                   (t: FsCheck.NormalFloat)
                   (small: FsCheck.PositiveInt)
                   (more: FsCheck.PositiveInt) ->
                let g2 = 1e-3 + abs g.Get % 100.0
                let trace = abs t.Get % 1000.0
                let b = small.Get % 512 + 1
                let bb = b + more.Get % 512 + 1
                let measured = NoiseScale.simple b bb (expected g2 trace b) (expected g2 trace bb)
                Expect.floatClose Accuracy.medium measured.Value (trace / g2) "tr / |G|^2"

            test "folded measurements of any scale read the closed form, per block and for the model" {
                // Embedding: |G|^2 = 2, tr = 12 (B_noise 6); FFN: |G|^2 = 1, tr = 30 (30); model: 42 / 3 = 14. The
                // gradients shrink 100x over the measurements, as they do over training: weights follow the scale.
                let state =
                    [ 0..59 ]
                    |> List.fold
                        (fun s i ->
                            let scale = 10.0 ** (-2.0 * float i / 59.0)

                            NoiseScale.observe
                                0.9
                                [
                                    Embedding, scale * expected 2.0 12.0 4, scale * expected 2.0 12.0 16
                                    FeedForward, scale * expected 1.0 30.0 4, scale * expected 1.0 30.0 16
                                ]
                                s)
                        NoiseScale.start

                Expect.floatClose Accuracy.medium (NoiseScale.ofBlock 4 16 state Embedding).Value 6.0 "12 / 2"
                Expect.floatClose Accuracy.medium (NoiseScale.ofBlock 4 16 state FeedForward).Value 30.0 "30 / 1"
                Expect.floatClose Accuracy.medium (NoiseScale.ofModel 4 16 state).Value 14.0 "42 / 3"
                Expect.isNone (NoiseScale.ofBlock 4 16 state Norm) "not measured"
            }

            test "a loss spike is capped: 40 steps later the estimate is back within 10% (raw averages read 0)" {
                let steady s =
                    NoiseScale.observe 0.9 [ Embedding, expected 2.0 12.0 4, expected 2.0 12.0 16 ] s

                let before = List.fold (fun s _ -> steady s) NoiseScale.start [ 1..30 ]
                // A step whose whole-batch gradient is 1000x and larger than its half's (as in a real spike).
                let spiked = NoiseScale.observe 0.9 [ Embedding, 1000.0, 3000.0 ] before
                let after = List.fold (fun s _ -> steady s) spiked [ 1..40 ]
                let estimate = (NoiseScale.ofModel 4 16 after).Value
                Expect.isLessThan (abs (estimate - 6.0) / 6.0) 0.1 "back near B_noise = 6"
                // Unweighted moving averages of the same measurements: the spike still dominates after 40 steps.
                let raw (small, big) (s, b) =
                    0.9 * small + 0.1 * s, 0.9 * big + 0.1 * b

                let smallRaw, bigRaw =
                    List.replicate 30 (expected 2.0 12.0 4, expected 2.0 12.0 16)
                    @ [ 1000.0, 3000.0 ]
                    @ List.replicate 40 (expected 2.0 12.0 4, expected 2.0 12.0 16)
                    |> List.fold raw (0.0, 0.0)

                Expect.equal (NoiseScale.simple 4 16 smallRaw bigRaw) (Some 0.0) "raw: tr(Sigma) clamped at 0"
            }

            test "Gaussian per-sample gradients: the estimate over 2,000 steps is tr(Sigma) / |G|^2 within 5%" {
                // d = 20, G = (0.1, ..., 0.1) (|G|^2 = 0.2), per-sample noise N(0, 0.25 I) (tr = 5): B_noise = 25
                // samples. Batches of 64 (32 in the half), drawn from a seeded generator.
                let random = Random 7
                let d, b, bb = 20, 32, 64

                let draw () =
                    let samples =
                        Array.init bb (fun _ -> Array.init d (fun _ -> 0.1 + 0.5 * normal random))

                    let meanOf (rows: float[][]) =
                        Array.init d (fun j -> rows |> Array.averageBy (fun r -> r[j]))

                    let squared (v: float[]) = v |> Array.sumBy (fun x -> x * x)
                    squared (meanOf samples[.. b - 1]), squared (meanOf samples)

                let readings =
                    [ 1..2000 ]
                    |> List.scan
                        (fun s _ ->
                            let small, big = draw ()
                            NoiseScale.observe 0.9 [ FeedForward, small, big ] s)
                        NoiseScale.start
                    |> List.skip 100
                    |> List.choose (NoiseScale.ofModel b bb)

                let mean = List.average readings
                Expect.isLessThan (abs (mean - 25.0) / 25.0) 0.05 (sprintf "mean reading %.2f, closed form 25" mean)
            }
        ]
