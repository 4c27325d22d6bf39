namespace BlockwiseLR.Core

open BlockwiseLR

open System

/// Block sharpness bookkeeping (docs/method.md section 2): the paper's proxy, summaries, orderings, and the rule that
/// turns measured sharpness into LR ratios.
[<RequireQualifiedAccess>]
module internal Sharpness =
    /// Mean and standard error (sample standard deviation / sqrt n; 0 for one sample).
    let summarize (samples: float list) : Estimate =
        let n = List.length samples

        if n = 0 then
            invalidArg "samples" "no samples"

        let mean = List.average samples

        let variance =
            if n < 2 then
                0.0
            else
                (samples |> List.sumBy (fun x -> (x - mean) ** 2.0)) / float (n - 1)

        {
            Mean = mean
            StdErr = sqrt (variance / float n)
            Samples = n
        }

    /// The paper's proxy from one mini-batch of B sequences: B x ||grad_b L_B||^2 / #params(b).
    let proxy (batchSize: int) (gradientSquaredNorm: float) (parameters: int64) =
        float batchSize * gradientSquaredNorm / float parameters

    /// The paper's ordering, flattest first: S(Emb) << S(QK) < S(FFN) < S(VO) << S(Norm).
    let paperOrder = [ Embedding; AttentionQK; FeedForward; AttentionVO; Norm ]

    /// The measured order of the paper's five blocks, flattest first (blocks not measured are left out).
    let order (estimates: (BlockKind * float) list) =
        estimates
        |> List.filter (fun (k, _) -> List.contains k paperOrder)
        |> List.sortBy snd
        |> List.map fst

    /// Whether a measured order is the paper's (over the blocks measured).
    let matchesPaper (measured: BlockKind list) =
        measured = (paperOrder |> List.filter (fun k -> List.contains k measured))
