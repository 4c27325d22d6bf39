module internal BlockwiseLR.Core.Tests.SharpnessTests

open Expecto
open FsCheck
open FsCheck.FSharp
open BlockwiseLR
open BlockwiseLR.Core
open BlockwiseLR.Core.Tests.Generators

[<Tests>]
let tests =
    testList
        "Sharpness"
        [
            test "summaries, the proxy and orderings by hand" {
                let e = Sharpness.summarize [ 1.0; 2.0; 3.0; 6.0 ]
                Expect.equal e.Mean 3.0 "mean"
                Expect.floatClose Accuracy.veryHigh e.StdErr (sqrt (14.0 / 3.0 / 4.0)) "sd / sqrt n"
                Expect.equal (Sharpness.proxy 8 2.5 100L) 0.2 "B ||g||^2 / n"

                let measured =
                    Sharpness.order
                        [
                            Norm, 9.0
                            AttentionVO, 3.0
                            Embedding, 0.1
                            FeedForward, 2.0
                            AttentionQK, 1.0
                        ]

                Expect.equal measured Sharpness.paperOrder "the paper's order"
                Expect.isTrue (Sharpness.matchesPaper measured) "matches"

                Expect.isFalse
                    (Sharpness.matchesPaper [ AttentionQK; Embedding; FeedForward; AttentionVO; Norm ])
                    "QK flattest does not"
            }

            testPropertyWithConfig
                config
                "adaptive ratios lie in [1, rMax], are 1 for the norms and grow as a block gets flatter"
            <| Prop.forAll
                (Arb.fromGen (Gen.zip3 (Gen.choose (1, 1000)) (Gen.choose (1, 1000)) (Gen.choose (1, 20))))
                (fun (a, b, alphaTenths) ->
                    let alpha, rMax, sNorm = float alphaTenths / 10.0, 10.0, 50.0
                    let ratio = AutoRatios.adaptiveRatio alpha rMax sNorm
                    let lo, hi = float (min a b) / 10.0, float (max a b) / 10.0
                    ratio lo >= 1.0 && ratio lo <= rMax && ratio sNorm = 1.0 && ratio lo >= ratio hi)
        ]
