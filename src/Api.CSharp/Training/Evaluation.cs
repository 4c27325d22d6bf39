using BlockwiseLR.Data;
using BlockwiseLR.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Training;

/// <summary>Loss and perplexity of a model on token windows.</summary>
/// <param name="Model">The model evaluated (its path or name).</param>
/// <param name="Loss">The mean next-token cross-entropy, in nats.</param>
/// <param name="Perplexity">exp(Loss).</param>
/// <param name="Windows">Windows evaluated.</param>
/// <param name="Tokens">Tokens predicted (windows times seq_len).</param>
public sealed record EvalResult(string Model, double Loss, double Perplexity, long Windows, long Tokens);

/// <summary>Evaluates a model's loss and perplexity on held-out tokens.</summary>
public static class Evaluation
{
    /// <summary>Mean next-token loss over the first <paramref name="maxWindows"/> non-overlapping windows of
    /// seq_len + 1 tokens: of the val split of a prepared dataset, or of a text file tokenized with the model's
    /// tokenizer (its blr-tokenizer.json, else GPT-2's).</summary>
    public static EvalResult Run(
        string model,
        string? data,
        string? textFile,
        int seqLen,
        int batchSize,
        long maxWindows,
        Device? device = null
    )
    {
        if ((data is null) == (textFile is null))
            throw new InvalidOptionException(
                "Data",
                data,
                "give a prepared dataset (its val split) or a text file, one of them"
            );
        Ranges.Check("SeqLen", "seq-len", seqLen);
        Ranges.Check("BatchSize", "batch-size", batchSize);
        Ranges.Check("Windows", "windows", maxWindows);
        var located = ModelLocator.Resolve(model);
        if (data is not null)
            TextTokenizers.RequireModelTokenizer(located, data);
        TorchRuntime.EnsureAvailable(cuda: device?.type == DeviceType.CUDA);
        using var lm = HfFormat.Load(located, device);
        if (seqLen < 1 || seqLen > lm.Config.Context)
            throw new InvalidOptionException("SeqLen", $"{seqLen}", $"must be in 1..{lm.Config.Context}");
        string? temp = null;
        if (textFile is not null)
        {
            var tokenizer = TextTokenizers.ForModel(located);
            using (tokenizer as IDisposable)
                temp = TextAsShard(textFile, tokenizer);
        }
        try
        {
            using var dataset = TokenDataset.Open(temp ?? data!, "val", lm.Config.Vocab);
            var (loss, windows) = MeanLoss(lm, dataset, seqLen, batchSize, maxWindows, device);
            return new EvalResult(located, loss, Math.Exp(loss), windows, windows * seqLen);
        }
        finally
        {
            if (temp is not null)
                Directory.Delete(temp, true);
        }
    }

    /// <summary>Mean next-token loss (weighted by windows) over the first <paramref name="maxWindows"/>
    /// non-overlapping windows of a split, in eval mode without gradients. Training and `blr eval` both use
    /// it.</summary>
    public static (double Loss, long Windows) MeanLoss(
        nn.Module<Tensor, Tensor> model,
        ITokenSource split,
        int seqLen,
        int batchSize,
        long maxWindows,
        Device? device
    )
    {
        var (sum, windows) = LossSum(model, split, seqLen, batchSize, maxWindows, device, 0, 1);
        return (sum / windows, windows);
    }

    /// <summary>The summed loss (each batch's mean times its windows) and the windows of every
    /// <paramref name="world"/>-th batch from batch <paramref name="rank"/> on: one rank's share of an
    /// evaluation.</summary>
    internal static (double Sum, long Windows) LossSum(
        nn.Module<Tensor, Tensor> model,
        ITokenSource split,
        int seqLen,
        int batchSize,
        long maxWindows,
        Device? device,
        int rank,
        int world,
        long? vocab = null
    )
    {
        using var noGrad = no_grad();
        model.eval();
        var layout = Windows.Layout(split, seqLen);
        double sum = 0;
        long windows = 0;
        foreach (
            var batch in Windows
                .ValidationBatches(layout, batchSize, maxWindows)
                .Where((_, index) => index % world == rank)
        )
        {
            // Each batch in its own scope: its activations and logits are freed before the next is made.
            using var scope = NewDisposeScope();
            var (inputs, targets) = Windows.Assemble(split, layout, batch, device, vocab);
            sum += LanguageModel.Loss(model.forward(inputs), targets).item<float>() * inputs.shape[0];
            windows += inputs.shape[0];
        }
        return (sum, windows);
    }

    /// <summary>A text file as a one-shard "val" split in a temporary folder (one document), in the model's
    /// tokenizer.</summary>
    static string TextAsShard(string path, ITextTokenizer tokenizer)
    {
        var text = Corpus.Read(path, new CorpusOptions()).Single().Text;
        var folder = Directory.CreateTempSubdirectory("blr-eval-").FullName;
        using (var writer = new TokenShardWriter(Path.Combine(folder, "val_000000.bin"), tokenizer.VocabSize))
        {
            writer.Write([tokenizer.EndOfText]);
            writer.Write(tokenizer.Encode(text).ToArray());
        }
        return folder;
    }
}
