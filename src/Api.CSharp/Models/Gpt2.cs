using BlockwiseLR.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlockwiseLR.Models;

/// <summary>GPT-2: learned positions, pre-LayerNorm blocks, tanh-GELU MLP, optional biases, tied or untied
/// head. Q, K and V are separate projections (they get different learning rates); state-dict names are
/// Hugging Face's, with attn.q_proj/k_proj/v_proj in place of the fused attn.c_attn.</summary>
public sealed class Gpt2 : LanguageModel
{
    readonly Gpt2Body transformer;

    /// <summary>A GPT-2 of <paramref name="config"/> with its parameters allocated (uninitialized) on <paramref
    /// name="device"/>.</summary>
    public Gpt2(ModelConfig config, Device device)
        : base(nameof(Gpt2), config)
    {
        transformer = new Gpt2Body(config, device, Attend);
        register_module("transformer", transformer);
        RegisterUntiedHead(device);
    }

    internal override Tensor Forward(Tensor tokens, KvCache? cache)
    {
        CheckLength(tokens, cache);
        var compute = ComputeType;
        var start = cache?.Length ?? 0;
        var positions = transformer.Wpe.Weight[start..(start + (int)tokens.shape[1])]; // (T, d)
        var x = transformer.Wte.forward(tokens) + positions; // (B, T, d) fp32 residual stream
        for (var layer = 0; layer < transformer.H.Count; layer++)
            x = transformer.H[layer].Forward(x, compute, cache, layer);
        cache?.Advance((int)tokens.shape[1]);
        return Head(transformer.LnF.forward(x), UntiedHead?.Weight ?? transformer.Wte.Weight);
    }

    sealed class Gpt2Body : ExplicitModule
    {
        public Embedding Wte { get; }
        public Embedding Wpe { get; }
        public ModuleList<TransformerBlock> H { get; }
        public LayerNorm LnF { get; }

        public Gpt2Body(ModelConfig c, Device device, Func<Tensor, Tensor, Tensor, bool, Tensor> attend)
            : base("transformer")
        {
            Wte = new Embedding(c.Vocab, c.Width, device);
            Wpe = new Embedding(c.Context, c.Width, device);
            H = new ModuleList<TransformerBlock>(
                Enumerable.Range(0, c.Layers).Select(_ => Block(c, device, attend)).ToArray()
            );
            LnF = new LayerNorm(c.Width, c.Bias, c.NormEps, device);
            register_module("wte", Wte);
            register_module("wpe", Wpe);
            register_module("h", H);
            register_module("ln_f", LnF);
        }
    }

    /// <summary>ln_1, attn (q/k/v_proj, c_proj), ln_2, mlp.</summary>
    static TransformerBlock Block(ModelConfig c, Device device, Func<Tensor, Tensor, Tensor, bool, Tensor> attend) =>
        new(
            ("ln_1", new LayerNorm(c.Width, c.Bias, c.NormEps, device)),
            (
                "attn",
                new CausalSelfAttention(
                    c.Width,
                    c.Heads,
                    c.Heads,
                    c.HeadDim,
                    c.Bias,
                    "c_proj",
                    rope: null,
                    attend,
                    device
                )
            ),
            ("ln_2", new LayerNorm(c.Width, c.Bias, c.NormEps, device)),
            ("mlp", new Gpt2Mlp(c, device))
        );

    /// <summary>c_fc, tanh-GELU, c_proj.</summary>
    sealed class Gpt2Mlp : ExplicitModule<Tensor, Tensor>
    {
        readonly Linear fc,
            proj;

        public Gpt2Mlp(ModelConfig c, Device device)
            : base("mlp")
        {
            fc = new Linear(c.Width, c.FeedForward, c.Bias, device);
            proj = new Linear(c.FeedForward, c.Width, c.Bias, device);
            register_module("c_fc", fc);
            register_module("c_proj", proj);
        }

        public override Tensor forward(Tensor x) =>
            proj.forward(nn.functional.gelu(fc.forward(x), GELU.Approximate.tanh));
    }
}
