"""The vendor's sample for this flow, run against the fake: Azure/azureml-examples
sdk/python/jobs/automl-standalone-jobs/automl-image-classification-multiclass-task-fridge-items/
automl-image-classification-multiclass-task-fridge-items.ipynb, its code cells in order.

Adapted only where it must be:
  * 1.2 credentials: the caller passes an MLClient built with FakeCredential and explicit workspace ids
    (instead of DefaultAzureCredential and MLClient.from_config).
  * 2.1 data: no download of fridgeObjects.zip (no internet); the caller generates
    {dataset_parent_dir}/fridgeObjects/{class}/*.jpg. The upload itself is the notebook's: the SDK uploads
    the local folder to https://{account}.blob.core.windows.net, which the fake serves as HTTPS_PROXY.
  * 5 MLflow: needs `mlflow` and `azureml-mlflow` (tracking URI azureml://...). Without them the best trial
    is read from the same `automl_best_child_run_id` tag on the parent job through ml_client.jobs.get, and
    the best run's metrics and the artifact download are skipped.
  * The display-only cells (sample image, matplotlib visualisation) and the XAI (explainability) invoke
    are left out: they show pictures, and the fake's model gives no explanations. The scored image is
    milk_bottle/0.jpg of the generated set rather than 99.jpg, and the final begin_delete is waited on
    (.result()) so the caller can check that nothing is left.
"""
from __future__ import annotations

import base64
import datetime
import json
import os

from azure.ai.ml import Input, MLClient, automl
from azure.ai.ml.automl import ClassificationPrimaryMetrics, SearchSpace
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import (
    AmlCompute,
    Data,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
    OnlineRequestSettings,
    ProbeSettings,
)
from azure.ai.ml.sweep import BanditPolicy, Choice, Uniform
from azure.core.exceptions import ResourceNotFoundError


def main(ml_client: MLClient, dataset_parent_dir: str) -> dict:
    dataset_dir = os.path.join(dataset_parent_dir, "fridgeObjects")

    # 2.2 Upload the images to Datastore through an AML Data asset (URI Folder)
    my_data = Data(
        path=dataset_dir,
        type=AssetTypes.URI_FOLDER,
        description="Fridge-items images",
        name="fridge-items-images",
    )
    uri_folder_data_asset = ml_client.data.create_or_update(my_data)
    print("Path to folder in Blob Storage:", uri_folder_data_asset.path)

    # 2.3 Convert the downloaded data to JSONL
    training_mltable_path = os.path.join(dataset_parent_dir, "training-mltable-folder")
    validation_mltable_path = os.path.join(dataset_parent_dir, "validation-mltable-folder")
    os.makedirs(training_mltable_path, exist_ok=True)
    os.makedirs(validation_mltable_path, exist_ok=True)
    train_validation_ratio = 5
    train_annotations_file = os.path.join(training_mltable_path, "train_annotations.jsonl")
    validation_annotations_file = os.path.join(validation_mltable_path, "validation_annotations.jsonl")
    json_line_sample = {"image_url": uri_folder_data_asset.path, "label": ""}
    index = 0
    with open(train_annotations_file, "w") as train_f:  # noqa: SIM117 - the notebook's code as written
        with open(validation_annotations_file, "w") as validation_f:
            for class_name in os.listdir(dataset_dir):
                sub_dir = os.path.join(dataset_dir, class_name)
                if not os.path.isdir(sub_dir):
                    continue
                for image in os.listdir(sub_dir):
                    json_line = dict(json_line_sample)
                    json_line["image_url"] += f"{class_name}/{image}"
                    json_line["label"] = class_name
                    if index % train_validation_ratio == 0:
                        validation_f.write(json.dumps(json_line) + "\n")
                    else:
                        train_f.write(json.dumps(json_line) + "\n")
                    index += 1

    # 2.4 Create MLTable data input
    def create_ml_table_file(filename):
        return (
            "paths:\n"
            f"  - file: ./{filename}\n"
            "transformations:\n"
            "  - read_json_lines:\n"
            "        encoding: utf8\n"
            "        invalid_lines: error\n"
            "        include_path_column: false\n"
            "  - convert_column_types:\n"
            "      - columns: image_url\n"
            "        column_type: stream_info"
        )

    def save_ml_table_file(output_path, mltable_file_contents):
        with open(os.path.join(output_path, "MLTable"), "w") as f:
            f.write(mltable_file_contents)

    save_ml_table_file(training_mltable_path, create_ml_table_file(os.path.basename(train_annotations_file)))
    save_ml_table_file(validation_mltable_path,
                       create_ml_table_file(os.path.basename(validation_annotations_file)))
    my_training_data_input = Input(type=AssetTypes.MLTABLE, path=training_mltable_path)
    my_validation_data_input = Input(type=AssetTypes.MLTABLE, path=validation_mltable_path)

    # 3. Compute target setup
    compute_name = "gpu-cluster-nc6"
    try:
        _ = ml_client.compute.get(compute_name)
        print("Found existing compute target.")
    except ResourceNotFoundError:
        print("Creating a new compute target...")
        compute_config = AmlCompute(
            name=compute_name,
            type="amlcompute",
            size="Standard_NC6",
            idle_time_before_scale_down=120,
            min_instances=0,
            max_instances=4,
        )
        ml_client.begin_create_or_update(compute_config).result()

    # 4.1 Automatic hyperparameter sweeping for your models (AutoMode)
    exp_name = "dpv2-image-classification-experiment"
    image_classification_job = automl.image_classification(
        compute=compute_name,
        experiment_name=exp_name,
        training_data=my_training_data_input,
        validation_data=my_validation_data_input,
        target_column_name="label",
        primary_metric="accuracy",
        tags={"my_custom_tag": "My custom value"},
    )
    image_classification_job.set_limits(max_trials=10, max_concurrent_trials=2)
    returned_job = ml_client.jobs.create_or_update(image_classification_job)
    print(f"Created job: {returned_job}")
    ml_client.jobs.stream(returned_job.name)
    submitted = [returned_job.name]

    # 4.2 Individual runs
    image_classification_job = automl.image_classification(
        compute=compute_name,
        experiment_name=exp_name,
        training_data=my_training_data_input,
        validation_data=my_validation_data_input,
        target_column_name="label",
    )
    image_classification_job.set_limits(timeout_minutes=60)
    image_classification_job.set_training_parameters(model_name="vitb16r224")
    returned_job = ml_client.jobs.create_or_update(image_classification_job)
    ml_client.jobs.stream(returned_job.name)
    submitted.append(returned_job.name)

    # 4.3 Manual hyperparameter sweeping for your model
    image_classification_job = automl.image_classification(
        compute=compute_name,
        experiment_name=exp_name,
        training_data=my_training_data_input,
        validation_data=my_validation_data_input,
        target_column_name="label",
        primary_metric=ClassificationPrimaryMetrics.ACCURACY,
        tags={"my_custom_tag": "My custom value"},
    )
    image_classification_job.set_limits(timeout_minutes=60, max_trials=10, max_concurrent_trials=2)
    image_classification_job.extend_search_space(
        [
            SearchSpace(
                model_name=Choice(["vitb16r224", "vits16r224"]),
                learning_rate=Uniform(0.001, 0.01),
                number_of_epochs=Choice([15, 30]),
            ),
            SearchSpace(
                model_name=Choice(["seresnext", "resnet50"]),
                learning_rate=Uniform(0.001, 0.01),
                layers_to_freeze=Choice([0, 2]),
            ),
        ]
    )
    image_classification_job.set_sweep(
        sampling_algorithm="Random",
        early_termination=BanditPolicy(evaluation_interval=2, slack_factor=0.2, delay_evaluation=6),
    )
    returned_job = ml_client.jobs.create_or_update(image_classification_job)
    ml_client.jobs.stream(returned_job.name)
    submitted.append(returned_job.name)
    hd_job = ml_client.jobs.get(returned_job.name + "_HD")
    print(hd_job)

    # 5. Retrieve the Best Trial (Best Model's trial/run)
    job_name = returned_job.name
    best_run_metrics = None
    try:
        import azureml.mlflow  # noqa: F401 - registers the azureml:// tracking scheme
        import mlflow
        from mlflow.tracking.client import MlflowClient
    except ImportError:
        best_child_run_id = ml_client.jobs.get(job_name).tags["automl_best_child_run_id"]
    else:
        MLFLOW_TRACKING_URI = ml_client.workspaces.get(name=ml_client.workspace_name).mlflow_tracking_uri
        mlflow.set_tracking_uri(MLFLOW_TRACKING_URI)
        mlflow_client = MlflowClient()
        mlflow_parent_run = mlflow_client.get_run(job_name)
        best_child_run_id = mlflow_parent_run.data.tags["automl_best_child_run_id"]
        best_run = mlflow_client.get_run(best_child_run_id)
        best_run_metrics = best_run.data.metrics
    print(f"Found best child run id: {best_child_run_id}")

    # 6.1 Create managed online endpoint
    online_endpoint_name = "ic-mc-fridge-items-" + datetime.datetime.now().strftime("%m%d%H%M")
    endpoint = ManagedOnlineEndpoint(
        name=online_endpoint_name,
        description="this is a sample online endpoint for deploying model",
        auth_mode="key",
        tags={"foo": "bar"},
    )
    ml_client.begin_create_or_update(endpoint).result()

    # 6.2 Register best model and deploy
    model_name = "ic-mc-fridge-items-model"
    model = Model(
        path=f"azureml://jobs/{best_child_run_id}/outputs/artifacts/outputs/mlflow-model/",
        name=model_name,
        description="my sample image classification multiclass model",
        type=AssetTypes.MLFLOW_MODEL,
    )
    registered_model = ml_client.models.create_or_update(model)
    print(registered_model.id)

    req_timeout = OnlineRequestSettings(request_timeout_ms=90000)
    deployment = ManagedOnlineDeployment(
        name="ic-mc-fridge-items-mlflow-deploy",
        endpoint_name=online_endpoint_name,
        model=registered_model.id,
        instance_type="Standard_DS3_V2",
        instance_count=1,
        request_settings=req_timeout,
        liveness_probe=ProbeSettings(failure_threshold=30, success_threshold=1, timeout=2, period=10,
                                     initial_delay=2000),
        readiness_probe=ProbeSettings(failure_threshold=10, success_threshold=1, timeout=10, period=10,
                                      initial_delay=2000),
    )
    ml_client.online_deployments.begin_create_or_update(deployment).result()
    endpoint.traffic = {"ic-mc-fridge-items-mlflow-deploy": 100}
    ml_client.begin_create_or_update(endpoint).result()

    endpoint = ml_client.online_endpoints.get(name=online_endpoint_name)
    print(endpoint.traffic)
    print(endpoint.scoring_uri)

    # Online Inference
    sample_image = os.path.join(dataset_dir, "milk_bottle", "0.jpg")

    def read_image(image_path):
        with open(image_path, "rb") as f:
            return f.read()

    request_json = {
        "input_data": {
            "columns": ["image"],
            "data": [base64.encodebytes(read_image(sample_image)).decode("utf-8")],
        }
    }
    request_file_name = os.path.join(dataset_parent_dir, "sample_request_data.json")
    with open(request_file_name, "w") as request_file:
        json.dump(request_json, request_file)
    resp = ml_client.online_endpoints.invoke(
        endpoint_name=online_endpoint_name,
        deployment_name=deployment.name,
        request_file=request_file_name,
    )
    prediction = json.loads(resp)[0]

    # Delete the deployment and endpoint
    ml_client.online_endpoints.begin_delete(name=online_endpoint_name).result()

    return {"jobs": submitted, "best_child_run_id": best_child_run_id, "best_run_metrics": best_run_metrics,
            "data_path": uri_folder_data_asset.path, "model_id": registered_model.id,
            "endpoint_name": online_endpoint_name, "traffic": dict(endpoint.traffic), "prediction": prediction,
            "compute_name": compute_name}
