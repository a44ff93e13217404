"""The vendor's safe-rollout how-to, run against the fake: Azure/azureml-examples
sdk/python/endpoints/online/managed/online-endpoints-safe-rollout.ipynb (commit
024e3d8b2526afc5914766afec9c02cd65053201), its code cells in order, plus the get_logs cells of
online-endpoints-simple-deployment.ipynb (6.2) and of how-to-safely-rollout-managed-endpoints.md (checking
the green deployment's logs after mirroring).

Adapted only where it must be:
  * 1.2 credentials: the caller passes an MLClient built with FakeCredential and explicit workspace ids.
  * 3.1 / 7 models: the notebook deploys ../model-1 and ../model-2 (a scikit-learn pickle with an
    Environment and a score.py CodeConfiguration). The fake serves no custom scoring code, only no-code
    MLflow deployments of AutoML models, so blue and green deploy `model_1` and `model_2` - registered
    AutoML image models - with no environment or code_configuration, and the request files
    (../model-N/sample-request.json) are image requests the caller wrote.
  * Every invoke's answer is kept so the caller can check it; nothing else changes.
"""
from __future__ import annotations

import datetime

from azure.ai.ml import MLClient
from azure.ai.ml.entities import (
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
)


def main(ml_client: MLClient, model_1: str, model_2: str, request_file_1: str, request_file_2: str) -> dict:
    seen: dict = {}

    # 2.1 Configure the endpoint
    online_endpoint_name = "endpoint-" + datetime.datetime.now().strftime("%m%d%H%M%f")
    endpoint = ManagedOnlineEndpoint(
        name=online_endpoint_name,
        description="this is a sample online endpoint",
        auth_mode="key",
        tags={"foo": "bar"},
    )

    # 2.2 Create the endpoint
    ml_client.begin_create_or_update(endpoint).result()

    # 3.1 Configure blue deployment
    model = model_1
    blue_deployment = ManagedOnlineDeployment(
        name="blue",
        endpoint_name=online_endpoint_name,
        model=model,
        instance_type="Standard_DS2_v2",
        instance_count=1,
    )

    # 3.2 Create the deployment
    ml_client.begin_create_or_update(blue_deployment).result()

    # blue deployment takes 100 traffic
    endpoint.traffic = {"blue": 100}
    ml_client.begin_create_or_update(endpoint).result()

    # 4. Test the endpoint with sample data
    seen["blue"] = ml_client.online_endpoints.invoke(
        endpoint_name=online_endpoint_name,
        deployment_name="blue",
        request_file=request_file_1,
    )

    # 5. Scale the deployment
    blue_deployment = ml_client.online_deployments.get(
        name="blue", endpoint_name=online_endpoint_name
    )
    blue_deployment.instance_count = 2
    ml_client.online_deployments.begin_create_or_update(blue_deployment).result()

    # 6. Get endpoint details
    endpoint = ml_client.online_endpoints.get(name=online_endpoint_name)
    print(endpoint.traffic)
    print(endpoint.scoring_uri)
    seen["traffic_after_blue"] = dict(endpoint.traffic)

    # 6.2 (simple-deployment) Get the logs for the new deployment
    seen["blue_logs"] = ml_client.online_deployments.get_logs(
        name="blue", endpoint_name=online_endpoint_name, lines=50
    )

    # 7. Deploy a new model, but send no traffic yet
    model2 = model_2
    green_deployment = ManagedOnlineDeployment(
        name="green",
        endpoint_name=online_endpoint_name,
        model=model2,
        instance_type="Standard_F2s_v2",
        instance_count=1,
    )
    ml_client.begin_create_or_update(green_deployment).result()

    # 7.1 Test the new deployment
    seen["green"] = ml_client.online_endpoints.invoke(
        endpoint_name=online_endpoint_name,
        deployment_name="green",
        request_file=request_file_2,
    )

    # 8. Test the deployment with mirrored traffic (preview)
    endpoint.mirror_traffic = {"green": 10}
    ml_client.begin_create_or_update(endpoint).result()

    # You can test mirror traffic by invoking the endpoint several times
    seen["mirrored_answers"] = []
    for i in range(20):
        seen["mirrored_answers"].append(ml_client.online_endpoints.invoke(
            endpoint_name=online_endpoint_name,
            request_file=request_file_1,
        ))

    # (how-to) confirm the share sent to green in its logs
    seen["green_logs"] = ml_client.online_deployments.get_logs(
        name="green", endpoint_name=online_endpoint_name, lines=50
    )

    endpoint.mirror_traffic = {"green": 0}
    ml_client.begin_create_or_update(endpoint).result()

    # 9. Test the new deployment with a small percentage of live traffic
    endpoint.traffic = {"blue": 90, "green": 10}
    ml_client.begin_create_or_update(endpoint).result()

    # 10. Send all traffic to your new deployment
    endpoint.traffic = {"blue": 0, "green": 100}
    ml_client.begin_create_or_update(endpoint).result()

    # 11. Remove the old deployment
    ml_client.online_deployments.begin_delete(
        name="blue", endpoint_name=online_endpoint_name
    ).result()

    # 12. Delete endpoint
    ml_client.online_endpoints.begin_delete(name=online_endpoint_name).result()

    seen["endpoint_name"] = online_endpoint_name
    return seen
