using TorchSharp.Modules;

namespace BlockwiseLR.Optim;

/// <summary>One parameter as an optimizer sees it.</summary>
public sealed record OptimizedParameter(string Name, Parameter Tensor, Block Block, bool Decays)
{
    public long Numel => Tensor.numel();
}
