/// The core's types that the library's public API uses, in the `BlockwiseLR` namespace beside the facade's own (a
/// C# user needs `using BlockwiseLR;` alone for a basic run). The rules that use them are internal to the core.
namespace BlockwiseLR

/// How a model computes. An enum, so C# sees it as one.
type Precision =
    /// fp32 everywhere.
    | Fp32 = 0
    /// fp32 storage, TF32 matmuls on GPUs that have them (same as Fp32 on CPU).
    | Tf32 = 1
    /// fp32 master weights, bf16 matmuls and attention, norms and loss in fp32 (autocast by hand).
    | Bf16Mixed = 2


/// Which parameters get decoupled weight decay. An enum, so C# sees it as one.
type WeightDecayPolicy =
    /// The paper's recipe: every parameter, norms and embeddings included.
    | AllParameters = 0
    /// nanoGPT: matrices and embeddings only; no decay on 1-D parameters (norms, biases).
    | MatricesOnly = 1
    /// Adam-mini 1.1.1: no decay for names containing `norm`, `ln` or `bias`.
    | AdamMiniNames = 2

/// Which optimizer's state to count and which update rule runs (Blockwise variants keep the same state as their
/// base).
type OptimizerFamily =
    /// AdamW: m and v per coordinate.
    | AdamW = 0
    /// Adam-mini: m per coordinate, one v per block of its partition.
    | AdamMini = 1
    /// Lion: one momentum per coordinate, sign updates.
    | Lion = 2
    /// Muon: orthogonalized momentum for hidden matrices, AdamW for the rest.
    | Muon = 3

/// The optimizers of a run: AdamW, Adam-mini, Lion or Muon, each plain (one LR for every block) or blockwise (an LR
/// per block from the ratios). An enum, so C# sees it as one; its names are in `Names.optimizers`.
type OptimizerKind =
    /// AdamW, one LR for every block.
    | AdamW = 0
    /// AdamW with an LR per block from the ratios (the paper's Blockwise LR).
    | BlockwiseAdamW = 1
    /// Adam-mini, one LR for every block.
    | AdamMini = 2
    /// Adam-mini with an LR per block from the ratios.
    | BlockwiseAdamMini = 3
    /// Lion, one LR for every block.
    | Lion = 4
    /// Lion with an LR per block from the ratios.
    | BlockwiseLion = 5
    /// Muon, one LR for every block.
    | Muon = 6
    /// Muon with an LR per block from the ratios.
    | BlockwiseMuon = 7

/// The precision of Muon's Newton-Schulz iteration: Auto is bfloat16 on CUDA (as the reference runs it) and
/// float32 on the CPU (where bf16 matmul is slow and no faster than fp32).
type NewtonSchulzPrecision =
    /// bfloat16 on CUDA, float32 on the CPU.
    | Auto = 0
    /// Always float32.
    | Float32 = 1
    /// Always bfloat16.
    | BFloat16 = 2

/// The schedules a run can name. An enum, so C# sees it as one; its names are in `Names.schedules`.
type LrSchedule =
    /// Warmup, then cosine to the floor at the last step (the paper's default).
    | Cosine = 0
    /// Warmup, then linear to the floor at the last step.
    | Linear = 1
    /// Warmup, then hold the peak.
    | Constant = 2
    /// Warmup-stable-decay: hold the peak, then decay linearly to the floor over the last 20% of the run.
    | Wsd = 3
    /// Warmup-stable-decay with a cosine decay over the last 20%.
    | WsdCosine = 4
    /// Warmup-stable-decay with a 1 - sqrt decay over the last 20% (the WSD paper's cool-down).
    | Wsd1Sqrt = 5
    /// The official WSD variant: hold until T/3, anneal the ratio back to 1 by 2T/3, then decay linearly to the floor.
    | WsdAnneal = 6

/// The part of a schedule a refusal is about.
type ScheduleField =
    /// The base (peak) LR.
    | BaseLr = 0
    /// The floor LR.
    | FloorLr = 1
    /// The run's total steps.
    | TotalSteps = 2
    /// The warmup steps.
    | WarmupSteps = 3
    /// The schedule's kind (a WSD decay fraction).
    | Kind = 4

/// The attention geometry Adam-mini needs to cut Q and K into heads.
type AttentionShape =
    {
        /// The model width (d_model).
        Width: int
        /// Query heads.
        Heads: int
        /// Key/value heads (fewer than Heads under grouped-query attention).
        KvHeads: int
    }

/// The two model families. An enum, so C# sees it as one.
type Architecture =
    /// GPT-2: learned positions, LayerNorm, GELU MLP.
    | Gpt2 = 0
    /// LLaMA: RoPE, RMSNorm, SwiGLU MLP, grouped-query attention.
    | Llama = 1

/// Everything that fixes a model's parameter names and shapes.
type ModelConfig =
    {
        /// GPT-2 or LLaMA.
        Architecture: Architecture
        /// Transformer layers.
        Layers: int
        /// The model width (d_model).
        Width: int
        /// Attention (query) heads; Width must divide by it.
        Heads: int
        /// Key/value heads (grouped-query attention); equals Heads for GPT-2.
        KvHeads: int
        /// Hidden size of the MLP (GPT-2: 4 x width; LLaMA: the SwiGLU intermediate size).
        FeedForward: int
        /// Maximum sequence length (GPT-2: rows of the position embedding).
        Context: int
        /// Vocabulary size (rows of the token embedding).
        Vocab: int
        /// Biases on every projection (GPT-2: also on LayerNorms).
        Bias: bool
        /// The output head is the token embedding.
        Tied: bool
        /// The norms' epsilon.
        NormEps: float
        /// RoPE base (LLaMA only).
        RopeTheta: float
    }

    /// Dimensions per head: Width / Heads.
    member c.HeadDim = c.Width / c.Heads

/// A measured quantity: its mean over samples (mini-batches or probes) and the standard error of that mean.
type Estimate =
    {
        /// The mean of the samples.
        Mean: float
        /// The standard error of the mean (0 for one sample).
        StdErr: float
        /// The number of samples.
        Samples: int
    }

/// Where a sampler stands: the epoch, and how many windows of that epoch's permutation it has used.
type SamplerPosition =
    {
        /// The epoch (each has its own permutation).
        Epoch: int
        /// Windows of the epoch's permutation used so far.
        Index: int64
    }
