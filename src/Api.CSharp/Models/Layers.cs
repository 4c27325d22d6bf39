using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Models;

/// <summary>A module that registers its children and parameters explicitly, under Hugging Face names.
/// TorchSharp's reflection-based registration (run by register_module on every child) would add each field a
/// second time under its C# name; it is switched off here. Parameters are never cached in fields: .to(device)
/// replaces registered parameters, so they are looked up by name.</summary>
public abstract class ExplicitModule(string name) : nn.Module(name)
{
    /// <summary>Registers nothing: children and parameters are registered by name in constructors.</summary>
    protected override void RegisterComponents() { }
}

/// <inheritdoc cref="ExplicitModule"/>
public abstract class ExplicitModule<TInput, TResult>(string name) : nn.Module<TInput, TResult>(name)
{
    /// <summary>Registers nothing: children and parameters are registered by name in constructors.</summary>
    protected override void RegisterComponents() { }
}

static class Dtypes
{
    /// <summary>The dtype norms and losses compute in: fp32, or fp64 for an fp64 model (e.g. Hessian checks).</summary>
    public static Tensor AtLeastFloat32(Tensor x) => x.dtype == ScalarType.Float64 ? x : x.to(ScalarType.Float32);
}

// Leaf modules with HF parameter names ("weight", "bias") and hand-written autocast: parameters stay fp32
// (the master weights); a matmul runs in the dtype of its input, so casting the input to bf16 is all it takes
// to compute a sublayer in bf16, while norms always compute in fp32 (as PyTorch autocast does).

/// <summary>y = x W^T + b with W in Linear (out, in) layout, computed in x's dtype.</summary>
public sealed class Linear : ExplicitModule<Tensor, Tensor>
{
    /// <summary>W, (out, in).</summary>
    public Parameter Weight => get_parameter("weight")!;

    /// <summary>b, (out); null without a bias.</summary>
    public Parameter? Bias => get_parameter("bias");

    /// <summary>A layer of (<paramref name="outFeatures"/>, <paramref name="inFeatures"/>) fp32 weights (uninitialized)
    /// on <paramref name="device"/>, with a bias if <paramref name="hasBias"/>.</summary>
    public Linear(long inFeatures, long outFeatures, bool hasBias, Device device)
        : base(nameof(Linear))
    {
        register_parameter("weight", new Parameter(empty(outFeatures, inFeatures, device: device)));
        if (hasBias)
        {
            register_parameter("bias", new Parameter(empty(outFeatures, device: device)));
        }
    }

    /// <summary>(..., in) -> (..., out) in x's dtype.</summary>
    public override Tensor forward(Tensor x) => nn.functional.linear(x, Weight.to(x.dtype), Bias?.to(x.dtype));
}

/// <summary>A table of vectors (vocab or positions, width), looked up in fp32.</summary>
public sealed class Embedding : ExplicitModule<Tensor, Tensor>
{
    /// <summary>The table, (count, width).</summary>
    public Parameter Weight => get_parameter("weight")!;

    /// <summary>A table of <paramref name="count"/> vectors of <paramref name="width"/> (uninitialized, fp32) on
    /// <paramref name="device"/>.</summary>
    public Embedding(long count, long width, Device device)
        : base(nameof(Embedding))
    {
        register_parameter("weight", new Parameter(empty(count, width, device: device)));
    }

    /// <summary>(B, T) int64 -> (B, T, width)</summary>
    public override Tensor forward(Tensor ids)
    {
        var rows = Weight.index_select(0, ids.reshape(-1));
        return rows.view([.. ids.shape, Weight.shape[1]]);
    }
}

/// <summary>LayerNorm over the last dimension, computed in the weight's dtype (fp32 master weights: fp32).</summary>
public sealed class LayerNorm : ExplicitModule<Tensor, Tensor>
{
    readonly double eps;

    /// <summary>The scale, (width).</summary>
    public Parameter Weight => get_parameter("weight")!;

    /// <summary>The shift, (width); null without a bias.</summary>
    public Parameter? Bias => get_parameter("bias");

    /// <summary>A LayerNorm over <paramref name="width"/> features with epsilon <paramref name="eps"/> (weights
    /// uninitialized).</summary>
    public LayerNorm(long width, bool hasBias, double eps, Device device)
        : base(nameof(LayerNorm))
    {
        this.eps = eps;
        register_parameter("weight", new Parameter(empty(width, device: device)));
        if (hasBias)
        {
            register_parameter("bias", new Parameter(empty(width, device: device)));
        }
    }

    /// <summary>Normalizes the last dimension of <paramref name="x"/>, in fp32 (fp64 for fp64 input).</summary>
    public override Tensor forward(Tensor x) =>
        nn.functional.layer_norm(Dtypes.AtLeastFloat32(x).to(Weight.dtype), [Weight.shape[0]], Weight, Bias, eps);
}

/// <summary>RMSNorm as Hugging Face LLaMA computes it: x / sqrt(mean(x^2) + eps) in fp32, times the weight.
/// TorchSharp has no RMSNorm module.</summary>
public sealed class RmsNorm : ExplicitModule<Tensor, Tensor>
{
    readonly double eps;

    /// <summary>The scale, (width).</summary>
    public Parameter Weight => get_parameter("weight")!;

    /// <summary>An RMSNorm over <paramref name="width"/> features with epsilon <paramref name="eps"/> (weight
    /// uninitialized).</summary>
    public RmsNorm(long width, double eps, Device device)
        : base(nameof(RmsNorm))
    {
        this.eps = eps;
        register_parameter("weight", new Parameter(empty(width, device: device)));
    }

    /// <summary>Normalizes the last dimension of <paramref name="x"/>, in fp32 (fp64 for fp64 input).</summary>
    public override Tensor forward(Tensor x)
    {
        var x32 = Dtypes.AtLeastFloat32(x);
        var variance = x32.square().mean([-1], keepdim: true);
        return Weight * (x32 * rsqrt(variance + eps));
    }
}

/// <summary>Rotary position embedding exactly as Hugging Face LLaMA: inv_freq = theta^(-2i/d),
/// emb = cat(freqs, freqs), x' = x cos + rotate_half(x) sin with rotate_half(x) = cat(-x2, x1).</summary>
public sealed class Rope
{
    readonly int headDim;
    readonly double theta;
    (Device Device, long Length, Tensor Cos, Tensor Sin)? cache;

    /// <summary>Rotary embedding for heads of <paramref name="headDim"/> dimensions with base <paramref
    /// name="theta"/>.</summary>
    public Rope(int headDim, double theta)
    {
        this.headDim = headDim;
        this.theta = theta;
    }

    /// <summary>(length, head_dim) fp32 cos and sin tables, computed once per device and length.</summary>
    (Tensor Cos, Tensor Sin) Tables(long length, Device device)
    {
        if (cache is { } c && c.Length >= length && c.Device.type == device.type && c.Device.index == device.index)
            return (c.Cos[..(int)length], c.Sin[..(int)length]);
        using var scope = NewDisposeScope();
        var invFreq = 1.0 / pow(theta, arange(0, headDim, 2, dtype: int64).to(float32) / headDim); // (hd/2)
        var positions = arange(length, dtype: float32);
        var freqs = outer(positions, invFreq); // (T, hd/2)
        var emb = cat([freqs, freqs], -1); // (T, hd)
        var cos = emb.cos().to(device).DetachFromDisposeScope();
        var sin = emb.sin().to(device).DetachFromDisposeScope();
        if (cache is { } old)
        {
            old.Cos.Dispose();
            old.Sin.Dispose();
        }
        cache = (device, length, cos, sin);
        return (cos, sin);
    }

    /// <summary>x: (B, heads, T, head_dim) at positions offset .. offset + T - 1, rotated in its own dtype.</summary>
    public Tensor Apply(Tensor x, int offset = 0)
    {
        var (cos, sin) = Tables(offset + x.shape[2], x.device);
        if (offset > 0)
            (cos, sin) = (cos[offset..], sin[offset..]);
        var half = headDim / 2;
        var rotated = cat([-x[.., .., .., half..], x[.., .., .., ..half]], -1);
        return x * cos.to(x.dtype) + rotated * sin.to(x.dtype);
    }
}
