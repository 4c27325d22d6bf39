using System.Security.Cryptography;
using System.Text;
using BlockwiseLR.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Distributed;

/// <summary>Checks, at the start of a data-parallel run, that every rank holds what rank 0 holds: a fingerprint
/// broadcast from rank 0 is compared on every rank and the verdict summed, so all ranks stop together, each with
/// the same one-line <see cref="DistributedException"/>.</summary>
static class Agreement
{
    public static void Require(ProcessGroup group, string what, byte[] fingerprint)
    {
        var rankZero = group.Broadcast(fingerprint);
        var verdicts = new double[group.WorldSize];
        verdicts[group.Rank] = rankZero.AsSpan().SequenceEqual(fingerprint) ? 0 : 1;
        var differ = group.AllReduce(verdicts).Select((v, r) => (v, r)).Where(x => x.v > 0).Select(x => x.r).ToList();
        if (differ.Count > 0)
            throw new DistributedException(
                $"the {what} of rank{(differ.Count > 1 ? "s" : "")} {string.Join(", ", differ)} differ from rank "
                    + $"0's; start every rank with the same command, data and files",
                sameOnEveryRank: true
            );
    }

    /// <summary>SHA-256 of the options as options.json writes them, the run folder made absolute.</summary>
    public static byte[] OptionsFingerprint(PretrainOptions options) =>
        SHA256.HashData(
            Encoding.UTF8.GetBytes(
                (options with { Run = options.Run with { Out = Path.GetFullPath(options.Run.Out) } }).ToJson()
            )
        );

    /// <summary>Per parameter, its float64 sum and sum of squares and a position-weighted sum, computed on the device:
    /// equal on every rank exactly when (up to a collision no seed produces) the weights are.</summary>
    public static byte[] ParametersFingerprint(nn.Module<Tensor, Tensor> model)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var parts = new List<Tensor>();
        foreach (var (_, p) in model.named_parameters())
        {
            // One parameter's float64 temporaries at a time.
            using var inner = NewDisposeScope();
            var x = p.detach().flatten().to(ScalarType.Float64);
            var position = arange(x.shape[0], dtype: ScalarType.Float64, device: x.device).remainder_(9973).add_(1);
            parts.Add(stack([x.sum(), x.square().sum(), (x * position).sum()]).MoveToOuterDisposeScope());
        }
        var values = cat(parts, 0).cpu().data<double>().ToArray();
        var bytes = new byte[values.Length * sizeof(double)];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        return SHA256.HashData(bytes);
    }
}
