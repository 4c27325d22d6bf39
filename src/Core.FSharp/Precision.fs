namespace BlockwiseLR.Core

/// How a model computes. An enum, so C# sees it as one.
type Precision =
    /// fp32 everywhere.
    | Fp32 = 0
    /// fp32 storage, TF32 matmuls on GPUs that have them (same as Fp32 on CPU).
    | Tf32 = 1
    /// fp32 master weights, bf16 matmuls and attention, norms and loss in fp32 (autocast by hand).
    | Bf16Mixed = 2
