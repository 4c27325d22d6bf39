using TorchSharp.Modules;

namespace BlockwiseLR.Optim;

/// <summary>One parameter as an optimizer sees it.</summary>
/// <param name="Name">The parameter's state-dict name.</param>
/// <param name="Tensor">The fp32 parameter the optimizer updates.</param>
/// <param name="Block">The block it belongs to (its learning rate).</param>
/// <param name="Decays">Whether weight decay applies to it (<see cref="AdamSettings.DecayPolicy"/>).</param>
public sealed record OptimizedParameter(string Name, Parameter Tensor, Block Block, bool Decays)
{
    /// <summary>Elements in the tensor.</summary>
    public long Numel => Tensor.numel();
}
