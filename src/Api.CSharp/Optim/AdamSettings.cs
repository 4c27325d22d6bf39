using BlockwiseLR.Core;

namespace BlockwiseLR.Optim;

/// <summary>An optimizer's hyperparameters, every one explicit (TorchSharp's own defaults differ from PyTorch's).
/// Defaults are the paper's AdamW recipe: betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on every parameter. Lion
/// reads the betas and weight decay (its recipe is (0.95, 0.98) and 1.0: <see cref="ForLion"/>); Muon's AdamW part
/// reads them all, and its matrices the weight decay and <see cref="NewtonSchulz"/>.</summary>
public sealed record AdamSettings
{
    /// <summary>The first-moment decay (Lion: the interpolation beta); default 0.9.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>The second-moment decay (Lion: the momentum beta); default 0.95.</summary>
    public double Beta2 { get; init; } = 0.95;

    /// <summary>Added to the square root of the second moment; default 1e-8.</summary>
    public double Eps { get; init; } = 1e-8;

    /// <summary>Decoupled weight decay, p *= 1 - lr * WeightDecay each step; default 0.1.</summary>
    public double WeightDecay { get; init; } = 0.1;

    /// <summary>Which parameters decay: AllParameters (paper), MatricesOnly (nanoGPT), AdamMiniNames (Adam-mini
    /// 1.1.1).</summary>
    public WeightDecayPolicy DecayPolicy { get; init; } = WeightDecayPolicy.AllParameters;

    /// <summary>Muon's Newton-Schulz precision (Auto: bfloat16 on CUDA, float32 on the CPU).</summary>
    public NewtonSchulzPrecision NewtonSchulz { get; init; } = NewtonSchulzPrecision.Auto;

    /// <summary>The official scripts' Lion recipe: betas (0.95, 0.98), weight decay 1.0.</summary>
    public static AdamSettings ForLion { get; } = Of(OptimizerFamily.Lion);

    /// <summary>A family's recipe (<see cref="OptimizerKinds.Recipe"/>) with eps 1e-8 and every parameter
    /// decaying.</summary>
    public static AdamSettings Of(OptimizerFamily family)
    {
        var recipe = OptimizerKinds.Recipe(family);
        return new()
        {
            Beta1 = recipe.Beta1,
            Beta2 = recipe.Beta2,
            WeightDecay = recipe.WeightDecay,
        };
    }
}
