//! The protobuf codec of every generated service and client: tonic-prost's, except that a
//! request body that is not a valid protobuf message is the client's fault.
//!
//! tonic reports decode failures as INTERNAL, which tells a client "our bug, retry may help";
//! malformed input is INVALID_ARGUMENT per the gRPC status code guide, and carries the same
//! `ErrorInfo` shape as every other error of this service.

use crate::service::error::reason;
use tonic::{
    Code, Status,
    codec::{BufferSettings, Codec as TonicCodec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Prost codec with client-fault decode errors. Named by `build.rs` (`codec_path`).
#[derive(Debug)]
pub struct Codec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> TonicCodec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ClientFaultDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ClientFaultDecoder(self.0.decoder())
    }
}

/// Wraps [`ProstDecoder`], turning its INTERNAL decode errors into INVALID_ARGUMENT.
#[derive(Debug)]
pub struct ClientFaultDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for ClientFaultDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| match status.code() {
            Code::Internal => malformed(status.message()),
            _ => status,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

fn malformed(detail: &str) -> Status {
    super::status::transport_status(
        Code::InvalidArgument,
        reason::MALFORMED_REQUEST,
        format!("the request is not a valid protobuf message: {detail}"),
        None,
    )
}
