/// How a training command shows its runs (train's one run, the demo's and compare's several): on a terminal a live
/// bar per run, labelled with the run's name; with output redirected (a log file, a pipe, CI) plain lines, as cargo
/// and pip write them there: the run's name before it starts, a line at every tenth of its steps, whose step never
/// goes back, and a one-line summary when it ends; no carriage returns, no ANSI escapes.
module BlockwiseLR.Cli.RunProgress

open System
open System.Diagnostics
open Spectre.Console
open BlockwiseLR

let private invariant = Globalization.CultureInfo.InvariantCulture

/// Reports on the training thread, at once and in order. (`Progress<T>` posts each report to the thread pool when
/// there is no synchronization context, as in a console app: reports then arrive late, out of order, or after the
/// run they belong to has ended.)
type private Immediate(handle: TrainProgress -> unit) =
    interface IProgress<TrainProgress> with
        member _.Report value = handle value

/// What a display is told: a run starts (by name), a step of the current run is done, the command's work ended.
type private Display =
    abstract Start: string -> unit
    abstract Report: TrainProgress -> unit
    abstract Finish: unit -> unit

/// Redirected output: plain lines.
type private Lines() =
    let mutable name: string option = None
    let mutable last: TrainProgress option = None
    let mutable firstStep = 0
    let mutable nextTenth = 1
    let mutable lastEval: (int * float) option = None
    let clock = Stopwatch()

    let seconds () = clock.Elapsed.TotalSeconds

    /// A run that ended without its last step (interrupted, or nothing left to train) says where it stopped.
    let close () =
        match name, last with
        | Some run, Some p when p.Step < p.Steps ->
            Console.Out.WriteLine(
                String.Format(invariant, "{0}: stopped after step {1}/{2}, {3:F1} s", run, p.Step, p.Steps, seconds ())
            )
        | Some run, None -> Console.Out.WriteLine(sprintf "%s: no steps left to train" run)
        | _ -> ()

        name <- None

    interface Display with
        member _.Start run =
            close ()
            name <- Some run
            last <- None
            lastEval <- None
            nextTenth <- 1
            clock.Restart()
            Console.Out.WriteLine(sprintf "%s: starting" run)

        member _.Report p =
            let run = defaultArg name "training"

            if last.IsNone then
                firstStep <- p.Step - 1

            last <- Some p

            if p.ValLoss.HasValue then
                lastEval <- Some(p.Step, p.ValLoss.Value)

            if p.Step >= p.Steps then
                let eval =
                    match lastEval with
                    | Some(_, v) -> String.Format(invariant, ", val loss {0:F4}", v)
                    | None -> ""

                Console.Out.WriteLine(
                    String.Format(
                        invariant,
                        "{0}: done, {1} steps in {2:F1} s, train loss {3:F4}{4}",
                        run,
                        p.Steps,
                        seconds (),
                        p.Loss,
                        eval
                    )
                )
            else
                let tenth = p.Step * 10 / p.Steps

                if tenth >= nextTenth then
                    nextTenth <- tenth + 1
                    let stepsHere = p.Step - firstStep

                    let eval =
                        match lastEval with
                        | Some(step, v) when step = p.Step -> String.Format(invariant, ", val loss {0:F4}", v)
                        | Some(step, v) -> String.Format(invariant, ", val loss {0:F4} (step {1})", v, step)
                        | None -> ""

                    Console.Out.WriteLine(
                        String.Format(
                            invariant,
                            "{0}: step {1}/{2} ({3}%), train loss {4:F4}{5}, {6:N0} tokens/s, about {7:F0} s left",
                            run,
                            p.Step,
                            p.Steps,
                            p.Step * 100 / p.Steps,
                            p.Loss,
                            eval,
                            p.TokensPerSecond,
                            seconds () / float stepsHere * float (p.Steps - p.Step)
                        )
                    )

        member _.Finish() = close ()

/// A terminal: a live bar per run, named, its line kept when the run ends.
type private Bars(context: ProgressContext) =
    let mutable task: (string * ProgressTask) option = None
    let mutable lastVal = ""

    let stop () =
        match task with
        | Some(_, t) -> t.StopTask()
        | None -> ()

    interface Display with
        member _.Start run =
            stop ()
            task <- Some(run, context.AddTask(Markup.Escape run, maxValue = 1.0))
            lastVal <- ""

        member _.Report p =
            match task with
            | None -> ()
            | Some(run, t) ->
                t.MaxValue <- float p.Steps
                t.Value <- float p.Step

                if p.ValLoss.HasValue then
                    lastVal <- String.Format(invariant, ", val {0:F3}", p.ValLoss.Value)

                t.Description <-
                    Markup.Escape(
                        String.Format(
                            invariant,
                            "{0}: step {1}/{2}, loss {3:F3}{4}, {5:N0} tok/s",
                            run,
                            p.Step,
                            p.Steps,
                            p.Loss,
                            lastVal,
                            p.TokensPerSecond
                        )
                    )

        member _.Finish() = stop ()

/// Whether stdout is a terminal that can redraw a bar.
let private live () =
    not Console.IsOutputRedirected
    && AnsiConsole.Profile.Capabilities.Interactive
    && AnsiConsole.Profile.Capabilities.Ansi

/// Runs `work`, giving it `starting` (to call with a run's name before each run) and the progress to hand the
/// runs; `visible` false (ranks other than 0 of a data-parallel run) shows nothing.
let show (visible: bool) (work: Action<string> -> IProgress<TrainProgress> -> 'T) : 'T =
    let drive (display: Display) =
        let result = work (Action<string> display.Start) (Immediate display.Report)
        display.Finish()
        result

    if not visible then
        work (Action<string> ignore) null
    elif live () then
        AnsiConsole
            .Progress()
            .Columns(
                [|
                    TaskDescriptionColumn() :> ProgressColumn
                    ProgressBarColumn()
                    PercentageColumn()
                    RemainingTimeColumn()
                |]
            )
            .Start(fun context -> drive (Bars context))
    else
        drive (Lines())
