using BlockwiseLR.Core;

namespace BlockwiseLR.Optim;

/// <summary>Adam hyperparameters, every one explicit (TorchSharp's own defaults differ from PyTorch's).
/// Defaults are the paper's recipe: betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on every parameter.</summary>
public sealed record AdamSettings
{
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;
    public double WeightDecay { get; init; } = 0.1;

    /// <summary>Which parameters decay: AllParameters (paper), MatricesOnly (nanoGPT), AdamMiniNames (Adam-mini
    /// 1.1.1).</summary>
    public WeightDecayPolicy DecayPolicy { get; init; } = WeightDecayPolicy.AllParameters;
}
