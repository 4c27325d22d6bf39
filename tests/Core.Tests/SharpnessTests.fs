module BlockwiseLR.Core.Tests.SharpnessTests

open Expecto
open FsCheck
open FsCheck.FSharp
open BlockwiseLR.Core
open BlockwiseLR.Core.Tests.Generators

[<Tests>]
let tests =
    testList "Sharpness" [
        test "summaries, the proxy and orderings by hand" {
            let e = Sharpness.summarize [ 1.0; 2.0; 3.0; 6.0 ]
            Expect.equal e.Mean 3.0 "mean"
            Expect.floatClose Accuracy.veryHigh e.StdErr (sqrt (14.0 / 3.0 / 4.0)) "sd / sqrt n"
            Expect.equal (Sharpness.proxy 8 2.5 100L) 0.2 "B ||g||^2 / n"
            let measured = Sharpness.order [ Norm, 9.0; AttentionVO, 3.0; Embedding, 0.1; FeedForward, 2.0; AttentionQK, 1.0 ]
            Expect.equal measured Sharpness.paperOrder "the paper's order"
            Expect.isTrue (Sharpness.matchesPaper measured) "matches"
            Expect.isFalse (Sharpness.matchesPaper [ AttentionQK; Embedding; FeedForward; AttentionVO; Norm ]) "QK flattest does not"
        }

        testPropertyWithConfig config "adaptive ratios lie in [1, rMax], are 1 for the norms and grow as a block gets flatter" <|
            Prop.forAll (Arb.fromGen (Gen.zip3 (Gen.choose (1, 1000)) (Gen.choose (1, 1000)) (Gen.choose (1, 20)))) (fun (a, b, alphaTenths) ->
                let alpha, rMax, sNorm = float alphaTenths / 10.0, 10.0, 50.0
                let ratio = Sharpness.adaptiveRatio alpha rMax sNorm
                let lo, hi = float (min a b) / 10.0, float (max a b) / 10.0
                ratio lo >= 1.0 && ratio lo <= rMax && ratio sNorm = 1.0 && ratio lo >= ratio hi)
    ]

[<Tests>]
let autoTests =
    testList "AutoRatios" [
        test "scaling above the floor keeps the shared floor and multiplies the peak's excess" {
            Expect.equal (AutoRatios.scaleAboveFloor 4.0 0.1 1.0) (1.0 + 3.0 * 0.9) "peak"
            Expect.equal (AutoRatios.scaleAboveFloor 4.0 0.1 0.1) 0.1 "the shared floor"
            Expect.equal (AutoRatios.scaleAboveFloor 4.0 0.1 0.05) 0.05 "warmup below the floor is unchanged"
        }

        test "ratios start uniform, update every K steps from the bias-corrected averages, norms stay at 1" {
            let observe = AutoRatios.observe 0.5 1.0 10.0 2
            let measured = [ Norm, 8.0; Embedding, 1.0; AttentionVO, 4.0; AttentionQK, 0.1 ]
            let once = observe measured AutoRatios.start
            Expect.equal (AutoRatios.ratioOf once Embedding) 1.0 "no update before K steps"
            let twice = observe measured once
            Expect.equal (AutoRatios.ratioOf twice Embedding) 8.0 "S_norm / S_emb (constant input: the corrected mean is exact)"
            Expect.equal (AutoRatios.ratioOf twice AttentionVO) 2.0 "8 / 4"
            Expect.equal (AutoRatios.ratioOf twice AttentionQK) 10.0 "clamped at rMax"
            Expect.equal (AutoRatios.ratioOf twice Norm) 1.0 "norms"
        }

        test "the noise scale is tr(Sigma) / |G|^2 from a small and a whole batch (closed form)" {
            // E|g_b|^2 = |G|^2 + tr(Sigma) / b: with |G|^2 = 2 and tr(Sigma) = 12, b = 4, B = 16.
            let g2, trace = 2.0, 12.0
            let small, big = g2 + trace / 4.0, g2 + trace / 16.0
            Expect.floatClose Accuracy.veryHigh (Sharpness.noiseScale 4 16 small big).Value 6.0 "B_noise = 12 / 2"
            Expect.isNone (Sharpness.noiseScale 4 16 8.0 1.0) "B |g_B|^2 below b |g_b|^2: no signal estimate"
        }

        test "with micro-batches the ratio is (S'_norm / S'_b)^alpha, S' = S (1 + B_noise / B), a block without a signal estimate the noisiest" {
            // Norm: |G|^2 = 4, tr = 0 (no noise); Embedding: |G|^2 = 1, tr = 16 (B_noise 16); QK: signal estimate <= 0.
            let squares g2 trace = g2 + trace / 4.0, g2 + trace / 16.0
            let (ns, nb), (es, eb) = squares 4.0 0.0, squares 1.0 16.0
            let noise = [ Norm, ns, nb; Embedding, es, eb; AttentionQK, 8.0, 1.0 ]
            let sharpness = [ Norm, 8.0; Embedding, 1.0; AttentionQK, 1.0 ]
            let state = AutoRatios.observeWithNoise 0.5 1.0 100.0 1 4 16 sharpness noise AutoRatios.start
            // Embedding: (8 x 1) / (1 x (1 + 16/16)) = 4 instead of 8; QK takes the largest factor measured (2).
            Expect.floatClose Accuracy.veryHigh (AutoRatios.ratioOf state Embedding) 4.0 "halved by its noise"
            Expect.floatClose Accuracy.veryHigh (AutoRatios.ratioOf state AttentionQK) 4.0 "the noisiest factor"
            let plain = AutoRatios.observeWithNoise 0.5 1.0 100.0 1 16 16 sharpness noise AutoRatios.start
            Expect.floatClose Accuracy.veryHigh (AutoRatios.ratioOf plain Embedding) 8.0 "no micro-batches: the sharpness rule alone"
        }
    ]
