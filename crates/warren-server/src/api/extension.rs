//! The API's routes of extensions: `/apps/{app_id}/x-{name}`, authenticated (and passed
//! through the API middlewares) as every other request, then handed to the route.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::routing::any;
use axum::{Json, Router};

use super::error::ApiError;
use super::request::{authenticate, refused, AppBy};
use super::Api;
use crate::extend::{ApiRequest, ApiRoute};

/// Adds one route per registered `x-` name (none without extensions).
pub(super) fn routes(api: &Arc<Api>, router: Router<Arc<Api>>) -> Router<Arc<Api>> {
    let Some(extensions) = &api.extensions else {
        return router;
    };
    extensions
        .routes
        .iter()
        .fold(router, |router, (name, route)| {
            let route = route.clone();
            router.route(
                &format!("/apps/{{app_id}}/x-{name}"),
                any(move |state, path, req| serve(route.clone(), state, path, req)),
            )
        })
}

async fn serve(
    route: Arc<dyn ApiRoute>,
    State(api): State<Arc<Api>>,
    Path(app_id): Path<String>,
    req: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let signed = authenticate(&api, req, AppBy::Id(&app_id)).await?;
    let Some(extensions) = &api.extensions else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "No such route",
        ));
    };
    let request = ApiRequest {
        app: &signed.app,
        method: &method,
        path: &path,
        params: &signed.params,
        body: &signed.body,
    };
    route
        .handle(&request, &extensions.server)
        .await
        .map(Json)
        .map_err(refused)
}
