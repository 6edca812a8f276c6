namespace BackendTls.Tests.Shared;

/// <summary>Certificates made with the openssl CLI, exactly as the seed tutorial makes them.</summary>
internal static class OpenSsl
{
    /// <summary>The tutorial's three openssl commands, as it prints them (a test checks they are still in the tutorial).</summary>
    public static IReadOnlyList<string[]> TutorialCommands { get; } =
    [
        ["req", "-x509", "-sha256", "-nodes", "-days", "365", "-newkey", "rsa:2048", "-subj", "/O=any domain/CN=*",
            "-keyout", "example_certs/root.key", "-out", "example_certs/root.crt"],
        ["req", "-out", "example_certs/httpbin.csr", "-newkey", "rsa:2048", "-nodes", "-keyout", "example_certs/httpbin.key",
            "-subj", "/CN=*/O=any domain"],
        ["x509", "-req", "-sha256", "-days", "365", "-CA", "example_certs/root.crt", "-CAkey", "example_certs/root.key",
            "-set_serial", "0", "-in", "example_certs/httpbin.csr", "-out", "example_certs/httpbin.crt"],
    ];

    /// <summary>
    /// The tutorial's root and httpbin certificates (CN=*, no subjectAltName, X.509 v1 leaf), or with
    /// <paramref name="subjectAltName"/> the same leaf signed with that extension (the fix).
    /// </summary>
    public static async Task<string> TutorialCertificatesAsync(string? subjectAltName = null)
    {
        var dir = Directory.CreateTempSubdirectory("seed-certs-").FullName;
        Directory.CreateDirectory(Path.Combine(dir, "example_certs"));
        await Run(dir, TutorialCommands[0]);
        await Run(dir, TutorialCommands[1]);
        var sign = TutorialCommands[2];
        if (subjectAltName is not null)
        {
            File.WriteAllText(Path.Combine(dir, "san.ext"), $"subjectAltName={subjectAltName}\n");
            sign = [.. sign, "-extfile", "san.ext"];
        }

        await Run(dir, sign);
        return Path.Combine(dir, "example_certs");
    }

    public static async Task<string> Run(string workingDirectory, params string[] arguments)
    {
        var (code, output) = await ExternalProcess.RunAsync("openssl", arguments, workingDirectory);
        return code == 0 ? output : throw new InvalidOperationException($"openssl {string.Join(' ', arguments)} failed: {output}");
    }
}
