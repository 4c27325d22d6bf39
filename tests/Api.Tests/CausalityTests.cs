using BlockwiseLR.Core;
using BlockwiseLR.Models;
using FsCheck;
using FsCheck.Fluent;
using static TorchSharp.torch;

namespace BlockwiseLR.Tests;

/// Property: changing token t never changes the logits at positions before t, for random small GPT-2 and
/// LLaMA models (GQA included), random sequences and random edits; the logits at t itself do change.
public class CausalityTests
{
    public sealed record Case(
        bool Llama,
        int Layers,
        int Heads,
        int KvDivisor,
        int HeadDim,
        int Length,
        int Edit,
        int Seed
    );

    static readonly Gen<Case> Cases =
        from llama in Gen.Elements(false, true)
        from layers in Gen.Choose(1, 2)
        from heads in Gen.Elements(1, 2, 4)
        from kvDivisor in Gen.Elements(1, 2, 4)
        from headDim in Gen.Elements(2, 4, 8)
        from length in Gen.Choose(2, 12)
        from edit in Gen.Choose(0, length - 1)
        from seed in Gen.Choose(0, 100_000)
        select new Case(llama, layers, heads, kvDivisor, headDim, length, edit, seed);

    static bool EarlierLogitsIgnoreTheEdit(Case c)
    {
        var kvHeads = c.Llama ? Math.Max(1, c.Heads / c.KvDivisor) : c.Heads;
        var config = ModelConfigs.Create(
            c.Llama ? "llama-tiny" : "gpt2-tiny",
            $"layers={c.Layers}",
            $"heads={c.Heads}",
            $"kv-heads={kvHeads}",
            $"width={c.Heads * c.HeadDim}",
            "d-ff=16",
            "vocab=50",
            "context=16"
        );
        using var scope = NewDisposeScope();
        var model = LanguageModel.Create(config, seed: c.Seed);
        var generator = new Generator((ulong)c.Seed);
        var ids = randint(0, 50, [2, c.Length], dtype: int64, generator: generator);
        var edited = ids.clone();
        edited[.., c.Edit] = (ids[.., c.Edit] + 1 + randint(0, 48, [2], dtype: int64, generator: generator)) % 50;
        using var noGrad = no_grad();
        var before = model.forward(ids);
        var after = model.forward(edited);
        var earlierUnchanged =
            c.Edit == 0 || (before[.., ..c.Edit] - after[.., ..c.Edit]).abs().max().item<float>() <= 1e-6f;
        var editedPositionChanged = (before[.., c.Edit] - after[.., c.Edit]).abs().max().item<float>() > 1e-6f;
        return earlierUnchanged && editedPositionChanged;
    }

    [Fact]
    public void Changing_token_t_never_changes_logits_before_t()
    {
        TorchRuntime.EnsureAvailable();
        Prop.ForAll(Cases.ToArbitrary(), c => EarlierLogitsIgnoreTheEdit(c))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(100));
    }
}
