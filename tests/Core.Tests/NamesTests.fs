module internal BlockwiseLR.Core.Tests.NamesTests

open System
open Expecto
open BlockwiseLR
open BlockwiseLR.Core

/// Every spelling a user may type: the canonical name in lower, upper and mixed case, padded with spaces.
let private spellings (name: string) =
    let mixed =
        String(
            name.ToCharArray()
            |> Array.mapi (fun i c -> if i % 2 = 0 then Char.ToUpperInvariant c else c)
        )

    [ name; name.ToUpperInvariant(); mixed; " " + name + " " ]

let private roundTrips what (table: (string * 'T) list) =
    for name, value in table do
        for text in spellings name do
            Expect.equal (Names.parse what table text) (Ok value) (sprintf "%s reads %A" text value)

    for name in Names.canonical table do
        let value = Names.parse what table name |> Result.defaultWith failwith
        Expect.equal (Names.format table value) name "the written name reads back as itself"

[<Tests>]
let tests =
    testList
        "Names"
        [
            test "every table reads each spelling in any case and writes its canonical name back" {
                roundTrips "optimizer" Names.optimizers
                roundTrips "schedule" Names.schedules
                roundTrips "precision" Names.precisions
                roundTrips "weight-decay policy" Names.weightDecayPolicies
                roundTrips "architecture" Names.architectures
            }

            test "every enum value has exactly one canonical name" {
                let complete (table: (string * 'T) list) (values: 'T seq) =
                    Expect.sequenceEqual
                        (table |> List.map snd |> List.distinct |> List.sort)
                        (values |> Seq.sort |> List.ofSeq)
                        "all values named"

                complete Names.optimizers (Enum.GetValues<OptimizerKind>())
                complete Names.schedules (Enum.GetValues<LrSchedule>())
                complete Names.precisions (Enum.GetValues<Precision>())
                complete Names.weightDecayPolicies (Enum.GetValues<WeightDecayPolicy>())
                complete Names.newtonSchulzPrecisions (Enum.GetValues<NewtonSchulzPrecision>())
            }

            test "the blockwise optimizers are exactly those named blockwise-*, and each name says its family" {
                for name, kind in Names.optimizers do
                    Expect.equal (OptimizerKind.isBlockwise kind) (name.StartsWith "blockwise-") name
                    Expect.equal (OptimizerKind.family kind = OptimizerFamily.AdamMini) (name.Contains "adam-mini") name
                    Expect.equal (OptimizerKind.family kind = OptimizerFamily.Lion) (name.EndsWith "lion") name
                    Expect.equal (OptimizerKind.family kind = OptimizerFamily.Muon) (name.EndsWith "muon") name
            }

            test "an unknown name lists the known ones" {
                match Names.parse "optimizer" Names.optimizers "adam" with
                | Error e ->
                    Expect.equal
                        e
                        ("unknown optimizer 'adam' (known: adamw, blockwise-adamw, adam-mini, blockwise-adam-mini, lion, "
                         + "blockwise-lion, muon, blockwise-muon)")
                        "message"
                | Ok _ -> failtest "accepted adam"
            }
        ]
