//! The Spin HTTP front of a model exported with `tensorlet export --wasi-http
//! --front spin`: a `spin-sdk` `#[http_service]` (WASI 0.3's
//! `wasi:http/handler`) around the endpoints of [`oip_front`], the same ones
//! the WASI 0.2 `http-front` answers.

use futures::StreamExt;
use oip_front::{MAX_BODY_BYTES, Reply, Routed, error};
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{FullBody, HeaderValue, Method, Request, Response, StatusCode};
use spin_sdk::http_service;

fn response(reply: Reply) -> Response<FullBody<bytes::Bytes>> {
    let mut response = Response::new(FullBody::new(bytes::Bytes::from(reply.body)));
    *response.status_mut() = StatusCode::from_u16(reply.status).expect("a valid status code");
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(reply.content_type));
    for (name, value) in reply.headers {
        headers.insert(
            name,
            HeaderValue::from_str(&value).expect("a valid header value"),
        );
    }
    response
}

/// Reads the whole request body, refusing more than [`MAX_BODY_BYTES`].
async fn read_body(req: Request) -> Result<Vec<u8>, Reply> {
    let mut stream = req.into_body().stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| error(400, format!("the request body could not be read: {e:?}")))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_BODY_BYTES {
            return Err(error(
                413,
                format!("the request body is over this server's limit of {MAX_BODY_BYTES} bytes"),
            ));
        }
    }
    Ok(bytes)
}

/// The Spin HTTP entry point: one request, one OIP answer.
#[http_service]
async fn handle(req: Request) -> Response<FullBody<bytes::Bytes>> {
    let (get, post) = (req.method() == Method::GET, req.method() == Method::POST);
    let reply = match oip_front::route(get, post, req.uri().path()) {
        Routed::Reply(reply) => reply,
        Routed::Infer(infer) => {
            let header_len = req
                .headers()
                .get("inference-header-content-length")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            match read_body(req).await {
                Ok(bytes) => infer.answer(header_len.as_deref(), &bytes),
                Err(reply) => reply,
            }
        }
    };
    response(reply)
}
