module internal BlockwiseLR.Core.Tests.RatiosTests

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open BlockwiseLR
open BlockwiseLR.Core
open BlockwiseLR.Core.Tests.Generators

[<Tests>]
let tests =
    testList
        "Ratios"
        [
            test "paper preset: Norm 1, VO 4, FFN 6, QK 8, Emb 10, PE 1; head = emb when tied, 1 when untied" {
                let r = Ratios.ratioOf

                Expect.equal
                    [ for k in BlockKind.all -> r true Ratios.paper k ]
                    [ 10.0; 1.0; 8.0; 4.0; 6.0; 1.0; 10.0 ]
                    "tied"

                Expect.equal
                    [ for k in BlockKind.all -> r false Ratios.paper k ]
                    [ 10.0; 1.0; 8.0; 4.0; 6.0; 1.0; 1.0 ]
                    "untied"
            }

            test "the optimizer fixture's map: head x10 on an untied head" {
                let spec =
                    Ratios.parse "emb=10,head=10,qk=8,vo=4,ffn=6,norm=1"
                    |> Result.defaultWith failwith

                Expect.equal
                    [ for k in BlockKind.all -> Ratios.ratioOf false spec k ]
                    [ 10.0; 1.0; 8.0; 4.0; 6.0; 1.0; 10.0 ]
                    "ratios"
            }

            test "a preset with overrides" {
                let spec = Ratios.parse "paper, head=3, qk=2" |> Result.defaultWith failwith

                Expect.equal
                    spec
                    { Ratios.paper with
                        OutputHead = Some 3.0
                        AttentionQK = 2.0
                    }
                    "overrides"
            }

            test "bad ratio text gets one message naming the problem" {
                let error text =
                    match Ratios.parse text with
                    | Error e -> e
                    | Ok _ -> failtestf "accepted %s" text

                Expect.stringContains (error "emb=10,xyz=2") "unknown key 'xyz'" "unknown key"
                Expect.stringContains (error "emb=10,emb=2") "given twice" "duplicate"
                Expect.stringContains (error "qk=fast") "qk=fast must be a finite number > 0" "not a number"
                Expect.stringContains (error "papr") "unknown preset 'papr'" "unknown preset"
                Expect.stringContains (error "") "empty" "empty"
                Expect.stringContains (error "paper,emb:10") "not KEY=VALUE" "syntax"
            }

            test "a tied model refuses a head ratio different from the embedding's" {
                let spec =
                    { Ratios.paper with
                        OutputHead = Some 1.0
                    }

                Expect.isError (Ratios.validate true spec) "tied with a different head ratio"
                Expect.isOk (Ratios.validate false spec) "untied is fine"

                Expect.isOk
                    (Ratios.validate
                        true
                        { Ratios.paper with
                            OutputHead = Some 10.0
                        })
                    "equal is fine"
            }

            testPropertyWithConfig config "format then parse gives back the same ratios"
            <| Prop.forAll (Arb.fromGen ratioSpec) (fun spec -> Ratios.parse (Ratios.format spec) = Ok spec)

            testPropertyWithConfig config "non-positive, NaN and infinite ratios are refused, naming the key"
            <| Prop.forAll
                (Arb.fromGen (
                    Gen.zip
                        (Gen.elements BlockKind.all)
                        (Gen.oneof
                            [
                                Gen.elements [ 0.0; nan; infinity; -infinity ]
                                Gen.choose (-1000, 0) |> Gen.map float
                            ])
                ))
                (fun (kind, value) ->
                    let key = BlockKind.key kind

                    let text =
                        sprintf "%s=%s" key (value.ToString(Globalization.CultureInfo.InvariantCulture))

                    match Ratios.parse text with
                    | Error e -> e.Contains(key + "=")
                    | Ok _ -> false)
        ]
