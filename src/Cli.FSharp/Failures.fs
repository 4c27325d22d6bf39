/// The one translation of .NET's I/O and parse exceptions into blr's line `<file or flag>: <what>; <fix>`: no .NET
/// message text reaches a user. Program routes every exception through `describe` before its own cases.
module BlockwiseLR.Cli.Failures

open System
open System.IO
open System.Text.Json
open System.Text.RegularExpressions

/// Whether .NET itself (not blr's library) wrote the exception's message.
let private fromDotNet (e: exn) =
    match e.Source with
    | null -> true
    | source ->
        source.StartsWith "System"
        || source.StartsWith "Microsoft"
        || source = "FSharp.Core"

/// The path a .NET message quotes ('/a/b'), if any.
let private quotedPath (message: string) =
    let m = Regex.Match(message, @"'([^']+)'")
    if m.Success then Some m.Groups[1].Value else None

/// The text a .NET parse message quotes ("The input string 'x' was not ..."), if any.
let private quoted (message: string) =
    let m = Regex.Match(message, "'([^']*)'")
    if m.Success then Some m.Groups[1].Value else None

// errno values .NET puts in an IOException's HResult on Linux and macOS.
let private ENOSPC = 28
let private EROFS = 30
let private ENOTDIR = 20
let private EEXIST = 17
let private EISDIR = 21
let private EDQUOT = 122

/// (exit code, line) for a .NET I/O or parse failure; None for blr's own exceptions, which already speak blr.
/// `flagOf path` names the flag a path came from ("--out runs/x"), when one did.
let describe (flagOf: string -> string option) (e: exn) : (int * string) option =
    let where (path: string option) =
        match path with
        | Some p -> flagOf p |> Option.defaultValue p
        | None -> "a file"

    let firstLine (text: string) =
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries)
        |> Array.tryHead
        |> Option.defaultValue ""

    match e with
    | :? FileNotFoundException as e ->
        let path =
            if isNull e.FileName then
                quotedPath e.Message
            else
                Some e.FileName

        Some(2, sprintf "%s: file not found; check the path" (where path))
    | :? DirectoryNotFoundException as e ->
        let path = quotedPath e.Message
        // A file where the path needs a folder ("run.json/x") is not a missing folder.
        let rec fileAbove (p: string) =
            match Path.GetDirectoryName p with
            | null
            | "" -> None
            | parent when File.Exists parent -> Some parent
            | parent -> fileAbove parent

        match path |> Option.bind fileAbove with
        | Some file ->
            Some(2, sprintf "%s: is a file, not a folder; give a folder, or move the file" (where (Some file)))
        | None -> Some(2, sprintf "%s: a folder on this path does not exist; check the path" (where path))
    | :? UnauthorizedAccessException as e when fromDotNet e ->
        Some(
            5,
            sprintf
                "%s: permission denied; check the folder's permissions and file system"
                (where (quotedPath e.Message))
        )
    | :? PathTooLongException as e ->
        Some(2, sprintf "%s: the path is too long; give a shorter one" (where (quotedPath e.Message)))
    | :? IOException as e when fromDotNet e ->
        let path = where (quotedPath e.Message)
        let errno = e.HResult &&& 0xFFFF

        if errno = ENOSPC || errno = EDQUOT || e.Message.Contains "No space left" then
            Some(5, sprintf "%s: the disk is full; free space or choose a folder on another disk" path)
        elif errno = EROFS || e.Message.Contains "Read-only file system" then
            Some(5, sprintf "%s: the file system is read-only; choose a folder on a writable disk" path)
        elif errno = ENOTDIR || errno = EEXIST || e.Message.Contains "already exists" then
            Some(2, sprintf "%s: is a file, not a folder; give a folder, or move the file" path)
        elif errno = EISDIR then
            Some(2, sprintf "%s: is a folder, not a file; give a file" path)
        else
            Some(5, sprintf "%s: the machine refused to read or write it; check the disk and its permissions" path)
    | :? JsonException as e ->
        let at =
            [
                if not (String.IsNullOrEmpty e.Path) then
                    yield sprintf "at %s" e.Path
                if e.LineNumber.HasValue then
                    yield sprintf "line %d" (e.LineNumber.Value + 1L)
            ]
            |> String.concat ", "

        Some(2, sprintf "a JSON file: not valid (%s); fix the file or write it again" at)
    | :? OverflowException as e when fromDotNet e ->
        let text =
            quoted e.Message
            |> Option.map (sprintf "'%s'")
            |> Option.defaultValue "a number"

        Some(2, sprintf "%s: out of range for its option; check the numbers given" text)
    | :? FormatException as e when fromDotNet e ->
        let text =
            quoted e.Message |> Option.map (sprintf "'%s'") |> Option.defaultValue "a value"

        Some(2, sprintf "%s: not a number; check the numbers given" text)
    | :? ArgumentException as e when fromDotNet e && e.Message.Contains "same key" ->
        let key = Regex.Match(e.Message, @"Key: ([^\s(]+)").Groups[1].Value.Trim()

        Some(2, sprintf "%s: given twice; give each key once" (if key = "" then "a key" else key))
    | :? ArgumentException as e when fromDotNet e ->
        let what =
            if String.IsNullOrEmpty e.ParamName then
                "a value"
            else
                e.ParamName

        Some(2, sprintf "%s: not a valid value; check the options and files given" what)
    | _ -> None
