//! The HTTP front of a model exported with `tensorlet export --wasi-http`:
//! a standard WASI 0.2 `wasi:http/incoming-handler` (what `jco serve`,
//! `wasmtime serve`, Spin and `tensorlet serve-wasi-http` run) around the
//! endpoints of [`oip_front`].

use std::io::{Read, Write};

use oip_front::{MAX_BODY_BYTES, Reply, Routed, error};
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

fn send(out: ResponseOutparam, reply: Reply) {
    let mut entries = vec![(
        "content-type".to_string(),
        reply.content_type.as_bytes().to_vec(),
    )];
    entries.extend(
        reply
            .headers
            .into_iter()
            .map(|(name, value)| (name.to_string(), value.into_bytes())),
    );
    let headers = Fields::from_list(&entries).expect("valid response headers");
    let response = OutgoingResponse::new(headers);
    response
        .set_status_code(reply.status)
        .expect("a valid status code");
    let body = response.body().expect("the body of a new response");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = body.write().expect("the stream of a new body");
        // The client may have gone away; nothing more can be done then.
        let _ = stream
            .write_all(&reply.body)
            .and_then(|()| Write::flush(&mut stream));
    }
    let _ = OutgoingBody::finish(body, None);
}

/// Reads the whole request body, refusing more than [`MAX_BODY_BYTES`].
fn read_body(req: &IncomingRequest) -> Result<Vec<u8>, Reply> {
    let body = req
        .consume()
        .map_err(|()| error(400, "the request body could not be read"))?;
    let mut bytes = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|()| error(400, "the request body could not be read"))?;
        stream
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| error(400, format!("the request body could not be read: {e}")))?;
    }
    drop(body);
    if bytes.len() > MAX_BODY_BYTES {
        return Err(error(
            413,
            format!("the request body is over this server's limit of {MAX_BODY_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

struct Front;

impl wasip2::exports::http::incoming_handler::Guest for Front {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_and_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let path = path_and_query.split('?').next().unwrap_or("/");
        let (get, post) = (
            matches!(request.method(), Method::Get),
            matches!(request.method(), Method::Post),
        );
        let reply = match oip_front::route(get, post, path) {
            Routed::Reply(reply) => reply,
            Routed::Infer(infer) => {
                let header_len = request
                    .headers()
                    .get("inference-header-content-length")
                    .into_iter()
                    .next()
                    .map(|v| String::from_utf8_lossy(&v).into_owned());
                match read_body(&request) {
                    Ok(bytes) => infer.answer(header_len.as_deref(), &bytes),
                    Err(reply) => reply,
                }
            }
        };
        drop(request);
        send(response_out, reply);
    }
}

wasip2::http::proxy::export!(Front);
