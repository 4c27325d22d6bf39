namespace BlockwiseLR.Core

open BlockwiseLR

/// Model FLOPs for MFU (nanoGPT's / PaLM's estimate).
[<RequireQualifiedAccess>]
module internal Flops =
    /// Training FLOPs per token: 6 N for the matmuls of N parameters (the position embedding is a lookup, not a
    /// matmul) plus 12 L H Q T for attention scores and values, forward and backward.
    let perToken (c: ModelConfig) (seqLen: int) =
        let lookups =
            ModelConfig.parameters c
            |> List.filter (fun p ->
                p.Name.EndsWith "wpe.weight"
                || (not c.Tied
                    && (p.Name.EndsWith "wte.weight" || p.Name.EndsWith "embed_tokens.weight")))
            |> List.sumBy (fun p -> Taxonomy.numel p.Shape)

        6.0 * float (ModelConfig.parameterCount c - lookups)
        + 12.0 * float c.Layers * float c.Heads * float c.HeadDim * float seqLen

    /// Dense peak TFLOP/s of common GPUs by precision (vendor data sheets, SXM parts).
    let peakTflops =
        [
            "h100", (989.0, 494.7, 66.9) // bf16, tf32, fp32
            "h200", (989.0, 494.7, 66.9)
            "a100", (312.0, 156.0, 19.5)
        ]
