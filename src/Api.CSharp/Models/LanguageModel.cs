using BlockwiseLR.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Models;

/// <summary>A decoder-only language model: (B, T) token ids -> (B, T, vocab) fp32 logits. Parameters are fp32
/// master weights under Hugging Face names (Linear (out, in) layout); <see cref="Precision"/> picks how the
/// forward pass computes.</summary>
public abstract class LanguageModel : ExplicitModule<Tensor, Tensor>
{
    /// <summary>A model named <paramref name="name"/> of <paramref name="config"/>.</summary>
    protected LanguageModel(string name, ModelConfig config)
        : base(name) => Config = config;

    /// <summary>The model's shape (layers, width, heads, vocabulary, context...).</summary>
    public ModelConfig Config { get; }

    /// <summary>The output head when it is its own tensor (lm_head); null when tied to the token embedding.</summary>
    protected Linear? UntiedHead { get; private set; }

    /// <summary>Registers lm_head (after the body, so state-dict order is Hugging Face's) unless the head is
    /// tied.</summary>
    protected void RegisterUntiedHead(Device device)
    {
        if (Config.Tied)
            return;
        UntiedHead = new Linear(Config.Width, Config.Vocab, hasBias: false, device);
        register_module("lm_head", UntiedHead);
    }

    /// <summary>Fp32 and Tf32 compute in fp32 (TF32 is a device switch, see <see cref="Precisions"/>);
    /// Bf16Mixed runs matmuls and attention in bf16 and norms, residual stream and logits in fp32.</summary>
    public Precision Precision { get; set; } = Precision.Fp32;

    /// <summary>bf16 under Bf16Mixed, else the parameters' own dtype (fp32, or fp64 for Hessian checks).</summary>
    protected ScalarType ComputeType =>
        Precision == Precision.Bf16Mixed ? ScalarType.BFloat16 : parameters().First().dtype;

    /// <summary>Attention written out (softmax(QK^T / sqrt(d) + causal mask) V) instead of the fused kernel: the
    /// fused kernels have no double backward, which Hessian-vector products need. Same result, slower.</summary>
    public bool MathAttention { get; set; }

    /// <summary>Attention of (B, H, T, hd) queries to (B, H, S, hd) keys and values: causal (S = T), or every
    /// query to every key (a cached step: the new token sees all earlier ones).</summary>
    internal Tensor Attend(Tensor query, Tensor key, Tensor value, bool causal)
    {
        if (!MathAttention)
            return nn.functional.scaled_dot_product_attention(query, key, value, null!, 0.0, causal);
        var scores = query.matmul(key.transpose(-2, -1)) / Math.Sqrt(query.shape[3]); // (B, H, T, S)
        if (!causal)
            return scores.softmax(-1).matmul(value);
        var time = query.shape[2];
        var future = ones(time, time, dtype: ScalarType.Bool, device: query.device).triu(1);
        return scores.masked_fill(future, double.NegativeInfinity).softmax(-1).matmul(value);
    }

    /// <summary>(B, T) token ids -> (B, T, vocab) logits.</summary>
    public override Tensor forward(Tensor tokens) => Forward(tokens, null);

    /// <summary>Logits of new tokens after the ones in <paramref name="cache"/> (positions continue from there),
    /// adding their keys and values to it; with no cache, the plain forward pass.</summary>
    internal abstract Tensor Forward(Tensor tokens, KvCache? cache);

    /// <summary>Builds a model with nanoGPT's initialization from <paramref name="seed"/> (same seed, same
    /// weights on every device: weights are drawn on the CPU, then moved). On the meta device nothing is
    /// allocated or initialized: names and shapes only.</summary>
    public static LanguageModel Create(ModelConfig config, Device? device = null, long seed = 0)
    {
        ModelConfigRules.Validate(config).OrThrow(reason => new ArgumentException(reason));
        TorchRuntime.EnsureAvailable();
        device ??= CPU;
        var buildOn = device.type == DeviceType.META ? device : CPU;
        LanguageModel model = config.Architecture switch
        {
            Architecture.Gpt2 => new Gpt2(config, buildOn),
            _ => new Llama(config, buildOn),
        };
        if (device.type != DeviceType.META)
        {
            model.Initialize(seed);
            model.to(device);
        }
        return model;
    }

    /// <summary>nanoGPT: every matrix and embedding ~ N(0, 0.02), residual output projections
    /// N(0, 0.02 / sqrt(2 x layers)), biases 0, norm weights 1. Draws in state-dict order from one generator.</summary>
    public void Initialize(long seed)
    {
        var generator = new Generator((ulong)seed);
        var residualStd = 0.02 / Math.Sqrt(2.0 * Config.Layers);
        using var noGrad = no_grad();
        foreach (var (name, parameter) in named_parameters())
        {
            if (name.EndsWith(".bias", StringComparison.Ordinal))
                parameter.zero_();
            else if (parameter.dim() == 1)
                parameter.fill_(1.0);
            else
                parameter.normal_(0.0, ModelConfigRules.IsResidualProjection(name) ? residualStd : 0.02, generator);
        }
    }

    /// <summary>Names and shapes in state-dict order (works on the meta device).</summary>
    public IReadOnlyList<ParameterShape> ParameterShapes() =>
        named_parameters().Select(p => new ParameterShape(p.name, p.parameter.shape)).ToList();

    /// <summary>Mean cross entropy of (B, T, V) logits against (B, T) targets, in fp32.</summary>
    public static Tensor Loss(Tensor logits, Tensor targets) =>
        nn.functional.cross_entropy(Dtypes.AtLeastFloat32(logits).reshape(-1, logits.shape[^1]), targets.reshape(-1));

    /// <summary>Logits from the final hidden states h (B, T, d): the head runs in the compute dtype; the
    /// logits come back in fp32 for the loss.</summary>
    protected Tensor Head(Tensor hidden, Parameter headWeight) =>
        Dtypes.AtLeastFloat32(nn.functional.linear(hidden.to(ComputeType), headWeight.to(ComputeType)));

    private protected void CheckLength(Tensor tokens, KvCache? cache = null)
    {
        if (tokens.dim() != 2)
            throw new ArgumentException(
                $"token ids must be (batch, time); got shape ({string.Join(", ", tokens.shape)})"
            );
        var length = tokens.shape[1] + (cache?.Length ?? 0);
        if (length > Config.Context)
            throw new ArgumentException($"sequence length {length} exceeds the model's context {Config.Context}");
        if (cache is { Length: > 0 } && tokens.shape[1] != 1)
            throw new ArgumentException("after the first call, a cached forward pass takes one new token at a time");
    }
}
