using System.Net;
using System.Net.Sockets;

namespace BlockwiseLR.Distributed;

/// <summary>llm.c's `tcp` rendezvous: rank 0 listens at the launcher's address, on MASTER_PORT + 1 (torchrun keeps
/// its own store on MASTER_PORT), and hands its bytes to each of the other ranks, which connect (retrying while
/// rank 0 starts) within a minute.</summary>
static class TcpRendezvous
{
    static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    public static byte[] ShareFromRankZero(LaunchInfo launch, byte[] bytes)
    {
        var host = launch.RendezvousHost ?? "127.0.0.1";
        var port = (launch.RendezvousPort ?? 29500) + 1;
        var address = Dns.GetHostAddresses(host).FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork)
            ?? throw new DistributedException($"MASTER_ADDR {host} has no IPv4 address; set it to rank 0's host");
        return launch.Rank == 0
            ? Serve(address, port, launch.WorldSize - 1, bytes)
            : Fetch(address, port, bytes.Length);
    }

    static byte[] Serve(IPAddress address, int port, int clients, byte[] bytes)
    {
        using var listener = new TcpListener(IPAddress.Any, port);
        try
        {
            listener.Start();
        }
        catch (SocketException e)
        {
            throw new DistributedException(
                $"rank 0 cannot listen on port {port} (MASTER_PORT + 1: {e.SocketErrorCode}); set MASTER_PORT so "
                    + $"that the port after it is free"
            );
        }
        var deadline = DateTime.UtcNow + Patience;
        for (var served = 0; served < clients; served++)
        {
            var accept = listener.AcceptTcpClientAsync();
            var left = deadline - DateTime.UtcNow;
            if (!accept.Wait(left > TimeSpan.Zero ? left : TimeSpan.Zero))
                throw new DistributedException(
                    $"only {served} of {clients} ranks reached rank 0 at {address}:{port} within "
                        + $"{Patience.TotalSeconds:0} s; check MASTER_ADDR and that every rank started"
                );
            using var client = accept.Result;
            client.GetStream().Write(bytes);
        }
        return bytes;
    }

    static byte[] Fetch(IPAddress address, int port, int length)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            try
            {
                using var client = new TcpClient();
                client.Connect(address, port);
                var buffer = new byte[length];
                client.GetStream().ReadExactly(buffer);
                return buffer;
            }
            catch (Exception e) when (e is SocketException or IOException && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(200);
            }
            catch (Exception e) when (e is SocketException or IOException)
            {
                throw new DistributedException(
                    $"cannot reach rank 0 at {address}:{port} within {Patience.TotalSeconds:0} s ({e.Message}); "
                        + $"check MASTER_ADDR and MASTER_PORT"
                );
            }
        }
    }
}
