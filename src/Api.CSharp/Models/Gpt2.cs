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

    public Gpt2(ModelConfig config, Device device) : base(nameof(Gpt2), config)
    {
        transformer = new Gpt2Body(config, device, Attend);
        register_module("transformer", transformer);
        RegisterUntiedHead(device);
    }

    public override Tensor forward(Tensor tokens)
    {
        CheckLength(tokens);
        var compute = ComputeType;
        var positions = transformer.Wpe.Weight[..(int)tokens.shape[1]];          // (T, d)
        var x = transformer.Wte.forward(tokens) + positions;                       // (B, T, d) fp32 residual stream
        foreach (var block in transformer.H)
            x = block.Forward(x, compute);
        return Head(transformer.LnF.forward(x), UntiedHead?.Weight ?? transformer.Wte.Weight);
    }

    sealed class Gpt2Body : ExplicitModule
    {
        public Embedding Wte { get; }
        public Embedding Wpe { get; }
        public ModuleList<Gpt2Block> H { get; }
        public LayerNorm LnF { get; }

        public Gpt2Body(ModelConfig c, Device device, Func<Tensor, Tensor, Tensor, Tensor> attend) : base("transformer")
        {
            Wte = new Embedding(c.Vocab, c.Width, device);
            Wpe = new Embedding(c.Context, c.Width, device);
            H = new ModuleList<Gpt2Block>(Enumerable.Range(0, c.Layers).Select(_ => new Gpt2Block(c, device, attend)).ToArray());
            LnF = new LayerNorm(c.Width, c.Bias, c.NormEps, device);
            register_module("wte", Wte);
            register_module("wpe", Wpe);
            register_module("h", H);
            register_module("ln_f", LnF);
        }
    }

    public sealed class Gpt2Block : ExplicitModule
    {
        readonly LayerNorm ln1, ln2;
        readonly Gpt2Attention attn;
        readonly Gpt2Mlp mlp;

        public Gpt2Block(ModelConfig c, Device device, Func<Tensor, Tensor, Tensor, Tensor> attend) : base("block")
        {
            ln1 = new LayerNorm(c.Width, c.Bias, c.NormEps, device);
            attn = new Gpt2Attention(c, device, attend);
            ln2 = new LayerNorm(c.Width, c.Bias, c.NormEps, device);
            mlp = new Gpt2Mlp(c, device);
            register_module("ln_1", ln1);
            register_module("attn", attn);
            register_module("ln_2", ln2);
            register_module("mlp", mlp);
        }

        /// <summary>x: (B, T, d) fp32 residual stream; sublayers compute in <paramref name="compute"/>.</summary>
        public Tensor Forward(Tensor x, ScalarType compute)
        {
            x = x + attn.Forward(ln1.forward(x).to(compute));
            return x + mlp.Forward(ln2.forward(x).to(compute));
        }
    }

    sealed class Gpt2Attention : ExplicitModule
    {
        readonly Linear q, k, v, proj;
        readonly int heads;
        readonly Func<Tensor, Tensor, Tensor, Tensor> attend;

        public Gpt2Attention(ModelConfig c, Device device, Func<Tensor, Tensor, Tensor, Tensor> attend) : base("attn")
        {
            this.attend = attend;
            heads = c.Heads;
            q = new Linear(c.Width, c.Width, c.Bias, device);
            k = new Linear(c.Width, c.Width, c.Bias, device);
            v = new Linear(c.Width, c.Width, c.Bias, device);
            proj = new Linear(c.Width, c.Width, c.Bias, device);
            register_module("q_proj", q);
            register_module("k_proj", k);
            register_module("v_proj", v);
            register_module("c_proj", proj);
        }

        public Tensor Forward(Tensor x)
        {
            var (batch, time, width) = (x.shape[0], x.shape[1], x.shape[2]);
            Tensor Heads(Linear projection) => projection.forward(x).view(batch, time, heads, width / heads).transpose(1, 2); // (B, H, T, hd)
            var y = attend(Heads(q), Heads(k), Heads(v));
            return proj.forward(y.transpose(1, 2).contiguous().view(batch, time, width));
        }
    }

    sealed class Gpt2Mlp : ExplicitModule
    {
        readonly Linear fc, proj;

        public Gpt2Mlp(ModelConfig c, Device device) : base("mlp")
        {
            fc = new Linear(c.Width, c.FeedForward, c.Bias, device);
            proj = new Linear(c.FeedForward, c.Width, c.Bias, device);
            register_module("c_fc", fc);
            register_module("c_proj", proj);
        }

        public Tensor Forward(Tensor x) => proj.forward(nn.functional.gelu(fc.forward(x), GELU.Approximate.tanh));
    }
}
