use console::{Deps, handle};
use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps: &'static Deps = Box::leak(Box::new(Deps::from_process()?));
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(handle(&req, deps))
    }))
    .await
}
