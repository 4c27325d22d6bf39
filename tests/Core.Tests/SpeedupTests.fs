module internal BlockwiseLR.Core.Tests.SpeedupTests

open Expecto
open FsCheck
open FsCheck.FSharp
open BlockwiseLR
open BlockwiseLR.Core
open BlockwiseLR.Core.Tests.Generators

/// loss = a - b * step at steps 0, 10, ..., last
let line (a: float) (b: float) (last: int) =
    [ for s in 0..10..last -> s, a - b * float s ]

[<Tests>]
let tests =
    testList
        "Speedup"
        [
            test "docs/method.md section 4 by hand" {
                // AdamW(2N = 200) goes linearly from 10 to 6; a candidate at N = 100 from 10 to 7 (ends above 6):
                // AdamW(2N) reaches 7 at step 150, so the speedup is 150 / 100.
                Expect.equal (Speedup.measure (line 10.0 0.02 200) (line 10.0 0.03 100) 100) (Some 1.5) "above"
                // A candidate reaching 5 at 100 (below AdamW(2N)'s 6) reaches 6 at step 80: 200 / 80.
                Expect.equal (Speedup.measure (line 10.0 0.02 200) (line 10.0 0.05 100) 100) (Some 2.5) "below"
                // A candidate ending above AdamW(2N)'s first evaluation: AdamW(2N) is there at step 0, speedup 0.
                Expect.equal
                    (Speedup.measure (line 10.0 0.02 200) [ 0, 11.0; 100, 10.5 ] 100)
                    (Some 0.0)
                    "worse than the start"

                Expect.equal (Speedup.measure [] (line 10.0 0.05 100) 100) None "no baseline"
            }

            testPropertyWithConfig config "on straight lines the interpolated step is exact"
            <| Prop.forAll
                (Arb.fromGen (Gen.zip3 (Gen.choose (1, 100)) (Gen.choose (1, 50)) (Gen.choose (1, 99))))
                (fun (a, b, fraction) ->
                    let slope = float b / 1000.0
                    let curve = line (float a) slope 1000
                    let target = float a - slope * 10.0 * float fraction

                    match Speedup.stepReaching curve target with
                    | Some s -> abs (s - 10.0 * float fraction) < 1e-6
                    | None -> false)
        ]
