module internal BlockwiseLR.Core.Tests.ModelConfigTests

open Expecto
open FsCheck
open FsCheck.FSharp
open BlockwiseLR
open BlockwiseLR.Core
open BlockwiseLR.Core.Tests.Generators

let create name overrides =
    ModelConfig.create name overrides |> Result.defaultWith failwith

/// A named config with random valid size overrides.
let overriddenConfig =
    gen {
        let! name = Gen.elements (ModelConfig.named |> List.map fst)
        let! layers = Gen.choose (1, 3)
        let! heads = Gen.elements [ 1; 2; 4; 8 ]
        let! kvDivisor = Gen.elements [ 1; 2; 4 ]
        let! headDim = Gen.elements [ 2; 4; 8 ]
        let! ff = Gen.choose (1, 64)
        let! vocab = Gen.choose (2, 500)
        let! tied = Gen.elements [ "true"; "false" ]
        let! bias = Gen.elements [ "true"; "false" ]
        let isLlama = name.StartsWith "llama"

        return
            create
                name
                [
                    "layers", string layers
                    "heads", string heads
                    "width", string (heads * headDim)
                    "kv-heads", string (if isLlama then max 1 (heads / kvDivisor) else heads)
                    "d-ff", string ff
                    "vocab", string vocab
                    "context", "32"
                    "tied", tied
                    "bias", bias
                ]
    }

[<Tests>]
let tests =
    testList
        "ModelConfig"
        [
            test "every named config is valid; gpt2-small with HF biases and vocab has 124,439,808 parameters" {
                for name, config in ModelConfig.named do
                    Expect.equal (ModelConfig.validate config) (Ok config) name

                Expect.equal
                    (ModelConfig.parameterCount (create "gpt2-small" [ "vocab", "50257"; "bias", "true" ]))
                    124_439_808L
                    "HF gpt2"
            }

            test "the paper's LLaMA sizes (docs/method.md section 5), to 0.1M" {
                let millions name =
                    System.Math.Round(float (ModelConfig.parameterCount (create name [])) / 1e6, 1)

                Expect.equal
                    [
                        for n in
                            [
                                "llama-0.13b"
                                "llama-0.25b"
                                "llama-0.5b"
                                "llama-0.75b"
                                "llama-0.9b"
                                "llama-1.1b"
                            ] -> millions n
                    ]
                    [ 133.9; 237.3; 522.0; 743.4; 898.3; 1175.0 ]
                    "counts"
            }

            test "overrides: width keeps d_ff's ratio, an explicit d-ff wins in any order, GPT-2 heads set kv-heads" {
                Expect.equal (create "gpt2-tiny" [ "width", "64" ]).FeedForward 256 "4 x width"
                Expect.equal (create "llama-tiny" [ "width", "256" ]).FeedForward 704 "352/128 ratio kept"
                Expect.equal (create "gpt2-tiny" [ "d-ff", "100"; "width", "64" ]).FeedForward 100 "explicit wins"
                Expect.equal (create "gpt2-tiny" [ "heads", "8" ]).KvHeads 8 "GPT-2 has no GQA"
                Expect.equal (create "llama-tiny" [ "heads", "8" ]).KvHeads 2 "LLaMA keeps its kv-heads"
            }

            test "bad names, keys, values and shapes get one line each" {
                let error name overrides =
                    match ModelConfig.create name overrides with
                    | Error e -> e
                    | Ok _ -> failtest "accepted"

                Expect.stringContains (error "gpt3" []) "unknown model 'gpt3'" "name"
                Expect.stringContains (error "gpt2-tiny" [ "depth", "3" ]) "unknown model override 'depth'" "key"
                Expect.stringContains (error "gpt2-tiny" [ "layers", "0" ]) "layers=0" "value"
                Expect.stringContains (error "gpt2-tiny" [ "bias", "maybe" ]) "true or false" "flag"
                Expect.stringContains (error "llama-tiny" [ "kv-heads", "3" ]) "not divisible by kv-heads 3" "GQA"

                Expect.stringContains
                    (error "gpt2-tiny" [ "kv-heads", "2" ])
                    "GPT-2 has no grouped-query attention"
                    "GPT-2 GQA"

                Expect.stringContains (error "llama-tiny" [ "heads", "128" ]) "even head dim" "RoPE"
            }

            testPropertyWithConfig config "every parameter of every (overridden) config lands in exactly one block"
            <| Prop.forAll (Arb.fromGen overriddenConfig) (fun c ->
                match Taxonomy.partition BlockRule.defaults (ModelConfig.parameters c) with
                | Ok placed ->
                    (Taxonomy.countsByBlock placed |> List.sumBy snd) = ModelConfig.parameterCount c
                    && (placed
                        |> List.forall (fun p ->
                            match p.Placement with
                            | WholeTensor _ -> true
                            | Slices _ -> false))
                | Error _ -> false)

            test "optimizer state: AdamW 8 bytes a parameter; Adam-mini 4 bytes a parameter plus one fp32 v per block" {
                let c = create "llama-tiny" []
                let p = 13_616_256L
                Expect.equal (ModelConfig.parameterCount c) p "llama-tiny parameters"
                Expect.equal (MemoryEstimate.optimizerStateBytes c OptimizerFamily.AdamW) (Ok(8L * p)) "AdamW"
                // v blocks by hand: embed 50304 rows, head 50304 rows, final norm 1; per layer q 4 heads, k 2 KV heads,
                // v 64 rows, o 128 rows, gate 352, up 352, down 128, two norms 1 each.
                let vBlocks =
                    50304L + 50304L + 1L + 4L * (4L + 2L + 64L + 128L + 352L + 352L + 128L + 2L)

                Expect.equal
                    (MemoryEstimate.optimizerStateBytes c OptimizerFamily.AdamMini)
                    (Ok(4L * p + 4L * vBlocks))
                    "Adam-mini"
            }

            test "Adam-mini keeps at most 50.5% of AdamW's state on gpt2-small and llama-0.25b" {
                for name in [ "gpt2-small"; "llama-0.25b" ] do
                    let c = create name []

                    let bytes family =
                        MemoryEstimate.optimizerStateBytes c family |> Result.defaultWith failwith

                    let share =
                        float (bytes OptimizerFamily.AdamMini) / float (bytes OptimizerFamily.AdamW)

                    Expect.isLessThanOrEqual share 0.505 name
            }

            test
                "memory estimate: fp32 weights and gradients, fewer activation bytes in bf16, a too long sequence \
                 refused" {
                let c = create "gpt2-tiny" []

                let estimate precision =
                    MemoryEstimate.estimate c OptimizerFamily.AdamW precision 2 64 false
                    |> Result.defaultWith failwith

                let fp32, bf16 = estimate Precision.Fp32, estimate Precision.Bf16Mixed
                Expect.equal fp32.WeightBytes (4L * fp32.Parameters) "weights"
                Expect.equal fp32.GradientBytes (4L * fp32.Parameters) "gradients"
                Expect.isLessThan bf16.ActivationBytes fp32.ActivationBytes "bf16 activations are smaller"

                Expect.isError
                    (MemoryEstimate.estimate c OptimizerFamily.AdamW Precision.Fp32 2 257 false)
                    "longer than the context"
            }
        ]

[<Tests>]
let flopsTests =
    testList
        "Flops"
        [
            test "6N + 12LHQT by hand for gpt2-tiny (tied) and llama-tiny (untied)" {
                // gpt2-tiny: 7,259,264 parameters, minus wpe 256 x 128 = 32,768 (a lookup); L=4, H=4, Q=32, T=256.
                let gpt2 = ModelConfig.create "gpt2-tiny" [] |> Result.defaultWith failwith

                Expect.equal
                    (Flops.perToken gpt2 256)
                    (6.0 * float (7_259_264 - 32_768) + 12.0 * 4.0 * 4.0 * 32.0 * 256.0)
                    "gpt2-tiny"
                // llama-tiny: 13,616,256 parameters, minus the untied embedding 50304 x 128 (a lookup).
                let llama = ModelConfig.create "llama-tiny" [] |> Result.defaultWith failwith

                Expect.equal
                    (Flops.perToken llama 128)
                    (6.0 * float (13_616_256 - 50304 * 128) + 12.0 * 4.0 * 4.0 * 32.0 * 128.0)
                    "llama-tiny"
            }
        ]
