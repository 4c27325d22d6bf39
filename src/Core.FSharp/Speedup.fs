namespace BlockwiseLR.Core

open BlockwiseLR

/// The paper's speedup (docs/method.md section 4): a candidate run of N steps against an AdamW run of 2N steps.
[<RequireQualifiedAccess>]
module internal Speedup =
    /// The first step at which an eval curve ((step, loss), in step order) reaches `target`, interpolating
    /// linearly between evaluations; None if it never does.
    let stepReaching (curve: (int * float) list) (target: float) : float option =
        match curve |> List.tryFindIndex (fun (_, loss) -> loss <= target) with
        | None -> None
        | Some 0 -> Some(float (fst curve.Head))
        | Some i ->
            let (s0, l0), (s1, l1) = curve[i - 1], curve[i]
            Some(float s0 + (l0 - target) / (l0 - l1) * float (s1 - s0))

    /// If the candidate at N ends above AdamW(2N)'s final loss: (step at which AdamW(2N) reaches the candidate's
    /// final loss) / N. Otherwise: 2N / (step at which the candidate reaches AdamW(2N)'s final loss).
    let measure (adamw2N: (int * float) list) (candidateN: (int * float) list) (n: int) : float option =
        match List.tryLast adamw2N, List.tryLast candidateN with
        | Some(_, baselineFinal), Some(_, candidateFinal) ->
            if candidateFinal > baselineFinal then
                stepReaching adamw2N candidateFinal |> Option.map (fun s -> s / float n)
            else
                stepReaching candidateN baselineFinal |> Option.map (fun s -> 2.0 * float n / s)
        | _ -> None
