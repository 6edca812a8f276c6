using System.Formats.Asn1;
using System.Net;
using System.Security.Cryptography.X509Certificates;

namespace BackendTls.Sidecar.Tls;

/// <summary>
/// The subjectAltName entries of a certificate. .NET's <see cref="X509SubjectAlternativeNameExtension"/>
/// exposes DNS names and IP addresses only, so the extension is decoded here with System.Formats.Asn1
/// to also get URI names (SPIFFE IDs).
/// </summary>
internal sealed record CertificateNames(bool HasSanExtension, IReadOnlyList<string> DnsNames, IReadOnlyList<string> Uris, IReadOnlyList<string> IpAddresses)
{
    private const string SubjectAltNameOid = "2.5.29.17";
    private static readonly Asn1Tag DnsTag = new(TagClass.ContextSpecific, 2);
    private static readonly Asn1Tag UriTag = new(TagClass.ContextSpecific, 6);
    private static readonly Asn1Tag IpTag = new(TagClass.ContextSpecific, 7);

    public static CertificateNames Read(X509Certificate2 certificate)
    {
        var extension = certificate.Extensions[SubjectAltNameOid];
        if (extension is null)
        {
            return new CertificateNames(false, [], [], []);
        }

        var dns = new List<string>();
        var uris = new List<string>();
        var ips = new List<string>();
        try
        {
            var sequence = new AsnReader(extension.RawData, AsnEncodingRules.DER).ReadSequence();
            while (sequence.HasData)
            {
                var tag = sequence.PeekTag();
                if (tag.HasSameClassAndValue(DnsTag))
                {
                    dns.Add(sequence.ReadCharacterString(UniversalTagNumber.IA5String, DnsTag));
                }
                else if (tag.HasSameClassAndValue(UriTag))
                {
                    uris.Add(sequence.ReadCharacterString(UniversalTagNumber.IA5String, UriTag));
                }
                else if (tag.HasSameClassAndValue(IpTag))
                {
                    ips.Add(new IPAddress(sequence.ReadOctetString(IpTag)).ToString());
                }
                else
                {
                    sequence.ReadEncodedValue();
                }
            }
        }
        catch (Exception e) when (e is AsnContentException or ArgumentException)
        {
            // A malformed extension is treated as carrying no usable name: verification then fails closed.
            return new CertificateNames(true, [], [], []);
        }

        return new CertificateNames(true, dns, uris, ips);
    }

    public IReadOnlyList<string> Display =>
        [.. DnsNames.Select(d => "DNS:" + d), .. Uris.Select(u => "URI:" + u), .. IpAddresses.Select(i => "IP:" + i)];
}
