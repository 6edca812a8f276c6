namespace BackendTls.Sidecar.Http1;

/// <summary>Character classes of RFC 9110/9112, as lookup tables over bytes.</summary>
internal static class HttpSyntax
{
    private static readonly bool[] Token = BuildToken();
    private static readonly bool[] FieldValue = BuildFieldValue();
    private static readonly bool[] TargetChar = BuildTarget();

    /// <summary>tchar (RFC 9110 §5.6.2): method names and header field names.</summary>
    public static bool IsTokenChar(byte b) => Token[b];

    /// <summary>field-vchar, SP, HTAB and obs-text; never CR, LF, NUL or other controls.</summary>
    public static bool IsFieldValueChar(byte b) => FieldValue[b];

    /// <summary>Visible ASCII except '#' (a fragment is never part of a request-target): the bytes a request-target may hold.</summary>
    public static bool IsTargetChar(byte b) => TargetChar[b];

    public static bool IsToken(ReadOnlySpan<byte> value)
    {
        if (value.IsEmpty)
        {
            return false;
        }

        foreach (var b in value)
        {
            if (!Token[b])
            {
                return false;
            }
        }

        return true;
    }

    private static bool[] BuildToken()
    {
        var table = new bool[256];
        for (var c = '0'; c <= '9'; c++)
        {
            table[c] = true;
        }

        for (var c = 'a'; c <= 'z'; c++)
        {
            table[c] = true;
            table[char.ToUpperInvariant(c)] = true;
        }

        foreach (var c in "!#$%&'*+-.^_`|~")
        {
            table[c] = true;
        }

        return table;
    }

    private static bool[] BuildFieldValue()
    {
        var table = new bool[256];
        for (var b = 0x20; b < 0x7F; b++)
        {
            table[b] = true;
        }

        table['\t'] = true;
        for (var b = 0x80; b <= 0xFF; b++)
        {
            table[b] = true; // obs-text: passed through as bytes
        }

        return table;
    }

    private static bool[] BuildTarget()
    {
        var table = new bool[256];
        for (var b = 0x21; b < 0x7F; b++)
        {
            table[b] = true;
        }

        table['#'] = false;
        return table;
    }

    /// <summary>ASCII case-insensitive equality of a byte span with a lower-case ASCII literal.</summary>
    public static bool EqualsLower(ReadOnlySpan<byte> value, ReadOnlySpan<byte> lowerLiteral)
    {
        if (value.Length != lowerLiteral.Length)
        {
            return false;
        }

        for (var i = 0; i < value.Length; i++)
        {
            var b = value[i];
            if (b is >= (byte)'A' and <= (byte)'Z')
            {
                b = (byte)(b | 0x20);
            }

            if (b != lowerLiteral[i])
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Trims SP and HTAB (optional whitespace) from both ends.</summary>
    public static ReadOnlySpan<byte> TrimOws(ReadOnlySpan<byte> value)
    {
        var start = 0;
        var end = value.Length;
        while (start < end && value[start] is (byte)' ' or (byte)'\t')
        {
            start++;
        }

        while (end > start && value[end - 1] is (byte)' ' or (byte)'\t')
        {
            end--;
        }

        return value[start..end];
    }

    /// <summary>Parses 1*DIGIT as a non-negative length; false on anything else or on overflow.</summary>
    public static bool TryParseLength(ReadOnlySpan<byte> digits, out long value)
    {
        value = 0;
        if (digits.IsEmpty || digits.Length > 18)
        {
            return false;
        }

        foreach (var b in digits)
        {
            if (b is < (byte)'0' or > (byte)'9')
            {
                return false;
            }

            value = (value * 10) + (b - '0');
        }

        return true;
    }
}
