"""The IoT Central sample's way to connect: no server certificate passed, only the system's CAs.

argv: device_id cert_file key_file. Driven by tests/suite/hub_trust_system.rs, which points
SSL_CERT_FILE at the trust store's bundle. Prints "sent" once a message went through.
"""
import sys

from azure.iot.device import IoTHubDeviceClient, Message, X509


def main():
    device_id, cert, key = sys.argv[1:4]
    client = IoTHubDeviceClient.create_from_x509_certificate(
        x509=X509(cert_file=cert, key_file=key),
        hostname="localhost",
        device_id=device_id,
        connection_retry=False,
    )
    client.connect()
    client.send_message(Message('{"temperature": 21}'))
    print("sent", flush=True)
    client.shutdown()


if __name__ == "__main__":
    main()
