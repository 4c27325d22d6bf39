module internal BlockwiseLR.Core.Tests.SamplingTests

open Expecto
open FsCheck
open FsCheck.FSharp
open BlockwiseLR
open BlockwiseLR.Core
open BlockwiseLR.Core.Tests.Generators

let shardsAndSeqLen =
    Gen.zip
        (Gen.listOfLength 4 (Gen.choose (0, 3000) |> Gen.map int64)
         |> Gen.filter (List.exists (fun n -> n > 64L)))
        (Gen.choose (1, 64))
    |> Arb.fromGen

[<Tests>]
let tests =
    testList
        "Sampling"
        [
            testPropertyWithConfig config "an epoch permutation holds every window exactly once"
            <| Prop.forAll
                (Arb.fromGen (Gen.zip3 (Gen.choose (0, 100000)) (Gen.choose (0, 5)) (Gen.choose (0, 2000))))
                (fun (seed, epoch, n) ->
                    let order = Sampling.permutation (uint64 seed) epoch (int64 n)
                    Array.sort (Array.copy order) = Array.init n int64)

            testPropertyWithConfig
                config
                "windows lie inside one shard, at multiples of seq_len, with room for seq_len + 1 tokens"
            <| Prop.forAll shardsAndSeqLen (fun (shards, seqLen) ->
                match Sampling.layout seqLen shards with
                | Error _ -> shards |> List.forall (fun n -> n < int64 seqLen + 1L)
                | Ok l ->
                    [ 0L .. l.Total - 1L ]
                    |> List.forall (fun w ->
                        let shard, start = Sampling.locate l w
                        start % int64 seqLen = 0L && start + int64 seqLen + 1L <= shards[shard]))

            testPropertyWithConfig config "taking batches walks the epochs in order and never repeats inside one"
            <| Prop.forAll
                (Arb.fromGen (Gen.zip3 (Gen.choose (1, 300)) (Gen.choose (1, 17)) (Gen.choose (0, 1000))))
                (fun (total, batch, seed) ->
                    let permutationOf epoch =
                        Sampling.permutation (uint64 seed) epoch (int64 total)

                    let rec run position taken =
                        if List.length taken >= 2 * total then
                            List.rev taken
                        else
                            let windows, next = Sampling.take permutationOf (int64 total) position batch
                            run next (List.rev (List.ofArray windows) @ taken)

                    let all = run { Epoch = 0; Index = 0L } [] |> List.truncate (2 * total)
                    all = (List.ofArray (permutationOf 0) @ List.ofArray (permutationOf 1)))

            testPropertyWithConfig config "the val choice holds at least the target and never every chunk"
            <| Prop.forAll
                (Arb.fromGen (
                    Gen.zip3 (Gen.listOfLength 12 (Gen.choose (1, 5000))) (Gen.choose (1, 20000)) (Gen.choose (0, 99))
                ))
                (fun (sizes, target, seed) ->
                    let chunks = sizes |> List.map int64 |> Array.ofList

                    match Sampling.chooseValChunks (uint64 seed) chunks (int64 target) with
                    | Ok chosen ->
                        chosen.Count < chunks.Length
                        && (chosen |> Seq.sumBy (fun i -> chunks[i])) >= int64 target
                    | Error e -> e.Contains "whole corpus" && Array.sum chunks - Array.max chunks < int64 target)

            test "bad sampling setups are refused with the reason" {
                Expect.stringContains
                    (match Sampling.layout 1024 [ 500L; 1000L ] with
                     | Error e -> e
                     | Ok _ -> "")
                    "longer than the data"
                    "seq_len"

                Expect.stringContains
                    (match Sampling.chooseValChunks 1UL [| 5L; 5L |] 0L with
                     | Error e -> e
                     | Ok _ -> "")
                    "val split is empty"
                    "empty val"

                Expect.stringContains
                    (match Sampling.chooseValChunks 1UL [| 5L |] 3L with
                     | Error e -> e
                     | Ok _ -> "")
                    "1 chunk(s)"
                    "one chunk"
            }

            test "SplitMix64 is the published sequence (seed 1234567)" {
                // Reference values of SplitMix64 (Vigna's splitmix64.c) for seed 1234567.
                let rng = SplitMix64(1234567UL)

                Expect.equal
                    [ rng.Next(); rng.Next(); rng.Next() ]
                    [ 6457827717110365317UL; 3203168211198807973UL; 9817491932198370423UL ]
                    "sequence"
            }
        ]
