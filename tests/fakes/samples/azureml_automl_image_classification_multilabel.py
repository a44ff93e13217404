"""The vendor's multi-label sample, run against the fake: Azure/azureml-examples
sdk/python/jobs/automl-standalone-jobs/automl-image-classification-multilabel-task-fridge-items/
automl-image-classification-multilabel-task-fridge-items.ipynb (the version whose JSONL step uses
../jsonl-conversion/classification_jsonl_converter.py, commit 0a42321395b6f0f5618fb88847128b6639225867),
its code cells in order.

Adapted only where it must be:
  * 1.2 credentials: the caller passes an MLClient built with FakeCredential and explicit workspace ids
    (instead of DefaultAzureCredential and MLClient.from_config).
  * 2.1 data: no download of multilabelFridgeObjects.zip (no internet); the caller generates
    {dataset_parent_dir}/multilabelFridgeObjects/images/*.jpg and labels.csv. The upload itself is the
    notebook's: the SDK uploads the local folder to https://{account}.blob.core.windows.net, which the fake
    serves as HTTPS_PROXY.
  * 2.3 `sys.path.insert(0, "../jsonl-conversion/")`: the two converter modules are vendored verbatim in
    azureml_jsonl_conversion/ next to this file.
  * 5 MLflow: needs `mlflow` and `azureml-mlflow` (tracking URI azureml://...). Without them the best trial
    is read from the same `automl_best_child_run_id` tag on the parent job through ml_client.jobs.get, and
    the best run's metrics (pandas table) and the artifact download are skipped.
  * Display: `%matplotlib inline` becomes the Agg backend, `IPython.display.Image` (a sample picture) is
    left out; the plotting cells otherwise run as published, including the 0.5 score threshold over the
    response and the decoding of the XAI visualisation.
  * Files: the scored image is `sample_image` (the notebook's 99.jpg by default), the request file goes
    into dataset_parent_dir rather than the working directory.
"""
from __future__ import annotations

import base64
import datetime
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # the notebook's `%matplotlib inline`

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from azure.ai.ml import Input, MLClient, automl  # noqa: E402
from azure.ai.ml.automl import ClassificationMultilabelPrimaryMetrics, SearchSpace  # noqa: E402
from azure.ai.ml.constants import AssetTypes  # noqa: E402
from azure.ai.ml.entities import (  # noqa: E402
    AmlCompute,
    Data,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
    OnlineRequestSettings,
    ProbeSettings,
)
from azure.ai.ml.sweep import BanditPolicy, Choice, Uniform  # noqa: E402
from azure.core.exceptions import ResourceNotFoundError  # noqa: E402

JSONL_CONVERSION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "azureml_jsonl_conversion")


def main(ml_client: MLClient, dataset_parent_dir: str, sample_image_name: str = "99.jpg") -> dict:
    dataset_name = "multilabelFridgeObjects"
    dataset_dir = os.path.join(dataset_parent_dir, dataset_name)

    # 2.2 Upload the images to Datastore through an AML Data asset (URI Folder)
    my_data = Data(
        path=dataset_dir,
        type=AssetTypes.URI_FOLDER,
        description="Fridge-items images multilabel",
        name="fridge-items-images-multilabel",
    )
    uri_folder_data_asset = ml_client.data.create_or_update(my_data)
    print(uri_folder_data_asset)
    print("")
    print("Path to folder in Blob Storage:")
    print(uri_folder_data_asset.path)

    # 2.3 Convert the downloaded data to JSONL: first generate the jsonl file
    if JSONL_CONVERSION not in sys.path:
        sys.path.insert(0, JSONL_CONVERSION)
    from base_jsonl_converter import write_json_lines
    from classification_jsonl_converter import ClassificationJSONLConverter

    converter = ClassificationJSONLConverter(
        uri_folder_data_asset.path, label_file=os.path.join(dataset_dir, "labels.csv")
    )
    jsonl_annotations = os.path.join(dataset_dir, "annotations.jsonl")
    write_json_lines(converter, jsonl_annotations)

    # Then split the data into train and validation
    training_mltable_path = os.path.join(dataset_parent_dir, "training-mltable-folder")
    validation_mltable_path = os.path.join(dataset_parent_dir, "validation-mltable-folder")
    os.makedirs(training_mltable_path, exist_ok=True)
    os.makedirs(validation_mltable_path, exist_ok=True)
    train_validation_ratio = 5
    train_annotations_file = os.path.join(training_mltable_path, "train_annotations.jsonl")
    validation_annotations_file = os.path.join(
        validation_mltable_path, "validation_annotations.jsonl"
    )
    with open(jsonl_annotations, "r") as annot_f:
        json_lines = annot_f.readlines()
    index = 0
    with open(train_annotations_file, "w") as train_f:
        with open(validation_annotations_file, "w") as validation_f:
            for json_line in json_lines:
                if index % train_validation_ratio == 0:
                    # validation annotation
                    validation_f.write(json_line)
                else:
                    # train annotation
                    train_f.write(json_line)
                index += 1

    # 2.4 Create MLTable data input
    def create_ml_table_file(filename):
        """Create ML Table definition"""

        return (
            "paths:\n"
            "  - file: ./{0}\n"
            "transformations:\n"
            "  - read_json_lines:\n"
            "        encoding: utf8\n"
            "        invalid_lines: error\n"
            "        include_path_column: false\n"
            "  - convert_column_types:\n"
            "      - columns: image_url\n"
            "        column_type: stream_info"
        ).format(filename)

    def save_ml_table_file(output_path, mltable_file_contents):
        with open(os.path.join(output_path, "MLTable"), "w") as f:
            f.write(mltable_file_contents)

    train_mltable_file_contents = create_ml_table_file(
        os.path.basename(train_annotations_file)
    )
    save_ml_table_file(training_mltable_path, train_mltable_file_contents)
    validation_mltable_file_contents = create_ml_table_file(
        os.path.basename(validation_annotations_file)
    )
    save_ml_table_file(validation_mltable_path, validation_mltable_file_contents)

    my_training_data_input = Input(type=AssetTypes.MLTABLE, path=training_mltable_path)
    my_validation_data_input = Input(type=AssetTypes.MLTABLE, path=validation_mltable_path)

    # 3. Compute target setup
    compute_name = "gpu-cluster"
    try:
        _ = ml_client.compute.get(compute_name)
        print("Found existing compute target.")
    except ResourceNotFoundError:
        print("Creating a new compute target...")
        compute_config = AmlCompute(
            name=compute_name,
            type="amlcompute",
            size="Standard_NC6s_v3",
            idle_time_before_scale_down=120,
            min_instances=0,
            max_instances=4,
        )
        ml_client.begin_create_or_update(compute_config).result()

    # 4.1 Automatic hyperparameter sweeping for your models (AutoMode)
    exp_name = "dpv2-image-classif-multi-label-experiment"
    image_classification_multilabel_job = automl.image_classification_multilabel(
        compute=compute_name,
        # name="dpv2-image-classif-multi-label-job-02",
        experiment_name=exp_name,
        training_data=my_training_data_input,
        validation_data=my_validation_data_input,
        target_column_name="label",
        primary_metric="iou",
        tags={"my_custom_tag": "My custom value"},
    )
    image_classification_multilabel_job.set_limits(
        max_trials=10,
        max_concurrent_trials=2,
    )
    returned_job = ml_client.jobs.create_or_update(image_classification_multilabel_job)
    print(f"Created job: {returned_job}")
    ml_client.jobs.stream(returned_job.name)
    submitted = [returned_job.name]

    # 4.2 Individual runs
    image_classification_multilabel_job = automl.image_classification_multilabel(
        compute=compute_name,
        experiment_name=exp_name,
        training_data=my_training_data_input,
        validation_data=my_validation_data_input,
        target_column_name="label",
    )
    image_classification_multilabel_job.set_limits(timeout_minutes=60)
    image_classification_multilabel_job.set_training_parameters(model_name="vitb16r224")
    returned_job = ml_client.jobs.create_or_update(image_classification_multilabel_job)
    print(f"Created job: {returned_job}")
    ml_client.jobs.stream(returned_job.name)
    submitted.append(returned_job.name)

    # 4.3 Manual hyperparameter sweeping for your model
    image_classification_multilabel_job = automl.image_classification_multilabel(
        compute=compute_name,
        # name="dpv2-image-classif-multi-label-job-02",
        experiment_name=exp_name,
        training_data=my_training_data_input,
        validation_data=my_validation_data_input,
        target_column_name="label",
        primary_metric=ClassificationMultilabelPrimaryMetrics.IOU,
        tags={"my_custom_tag": "My custom value"},
    )
    image_classification_multilabel_job.set_limits(
        timeout_minutes=60,
        max_trials=10,
        max_concurrent_trials=2,
    )
    image_classification_multilabel_job.extend_search_space(
        [
            SearchSpace(
                model_name=Choice(["vitb16r224"]),
                learning_rate=Uniform(0.005, 0.05),
                number_of_epochs=Choice([15, 30]),
                gradient_accumulation_step=Choice([1, 2]),
            ),
            SearchSpace(
                model_name=Choice(["seresnext"]),
                learning_rate=Uniform(0.005, 0.05),
                # model-specific, valid_resize_size should be larger or equal than valid_crop_size
                validation_resize_size=Choice([288, 320, 352]),
                validation_crop_size=Choice([224, 256]),  # model-specific
                training_crop_size=Choice([224, 256]),  # model-specific
            ),
        ]
    )
    image_classification_multilabel_job.set_sweep(
        sampling_algorithm="Random",
        early_termination=BanditPolicy(
            evaluation_interval=2, slack_factor=0.2, delay_evaluation=6
        ),
    )
    returned_job = ml_client.jobs.create_or_update(
        image_classification_multilabel_job
    )  # submit the job to the backend
    print(f"Created job: {returned_job}")
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
        best_run_id = best_child_run_id          # best_run.info.run_id
    else:
        MLFLOW_TRACKING_URI = ml_client.workspaces.get(
            name=ml_client.workspace_name
        ).mlflow_tracking_uri
        mlflow.set_tracking_uri(MLFLOW_TRACKING_URI)
        mlflow_client = MlflowClient()
        mlflow_parent_run = mlflow_client.get_run(job_name)
        print(mlflow_parent_run.data.tags.keys())
        best_child_run_id = mlflow_parent_run.data.tags["automl_best_child_run_id"]
        best_run = mlflow_client.get_run(best_child_run_id)
        best_run_metrics = best_run.data.metrics
        best_run_id = best_run.info.run_id
    print(f"Found best child run id: {best_child_run_id}")

    # 6.1 Create managed online endpoint
    online_endpoint_name = "ic-ml-fridge-items-" + datetime.datetime.now().strftime(
        "%m%d%H%M"
    )
    endpoint = ManagedOnlineEndpoint(
        name=online_endpoint_name,
        description="this is a sample online endpoint for deploying model",
        auth_mode="key",
        tags={"foo": "bar"},
    )
    ml_client.begin_create_or_update(endpoint).result()

    # 6.2 Register best model and deploy
    model_name = "ic-ml-fridge-items-model"
    model = Model(
        path=f"azureml://jobs/{best_run_id}/outputs/artifacts/outputs/mlflow-model/",
        name=model_name,
        description="my sample image classification multilabel model",
        type=AssetTypes.MLFLOW_MODEL,
    )
    registered_model = ml_client.models.create_or_update(model)
    print(registered_model.id)

    req_timeout = OnlineRequestSettings(request_timeout_ms=90000)
    deployment = ManagedOnlineDeployment(
        name="ic-ml-fridge-items-mlflow-dpl",
        endpoint_name=online_endpoint_name,
        model=registered_model.id,
        # use GPU instance type like Standard_NC6s_v3 for faster explanations
        instance_type="Standard_DS4_V2",
        instance_count=1,
        request_settings=req_timeout,
        liveness_probe=ProbeSettings(
            failure_threshold=30,
            success_threshold=1,
            timeout=2,
            period=10,
            initial_delay=2000,
        ),
        readiness_probe=ProbeSettings(
            failure_threshold=10,
            success_threshold=1,
            timeout=10,
            period=10,
            initial_delay=2000,
        ),
    )
    ml_client.online_deployments.begin_create_or_update(deployment).result()
    # ic ml fridge items deployment to take 100% traffic
    endpoint.traffic = {"ic-ml-fridge-items-mlflow-dpl": 100}
    ml_client.begin_create_or_update(endpoint).result()

    # Get endpoint details
    endpoint = ml_client.online_endpoints.get(name=online_endpoint_name)
    print(endpoint.traffic)
    print(endpoint.scoring_uri)

    # Online Inference
    sample_image = os.path.join(dataset_dir, "images", sample_image_name)

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

    # Visualize detections
    IMAGE_SIZE = (18, 12)
    plt.figure(figsize=IMAGE_SIZE)
    img_np = mpimg.imread(sample_image)
    from PIL import Image

    img = Image.fromarray(img_np.astype("uint8"), "RGB")
    x, y = img.size

    fig, ax = plt.subplots(1, figsize=(15, 15))
    ax.imshow(img_np)
    prediction_list = json.loads(resp)
    prediction = prediction_list[0]
    score_threshold = 0.5

    label_offset_x = 30
    label_offset_y = 30
    shown = []
    for index, score in enumerate(prediction["probs"]):
        if score > score_threshold:
            label = prediction["labels"][index]
            display_text = f"{label} ({round(score, 3)})"
            print(display_text)
            shown.append(label)

            color = "red"
            plt.text(label_offset_x, label_offset_y, display_text, color=color, fontsize=30)
            label_offset_y += 30
    plt.show()
    plt.close("all")

    # Generate the Scores and Explanations
    model_explainability = True
    xai_parameters = {
        "xai_algorithm": "xrai",
        "visualizations": True,
        "attributions": False,
        "confidence_score_threshold_multilabel": 0.8,
    }
    request_json = {
        "input_data": {
            "columns": ["image"],
            "data": [
                json.dumps(
                    {
                        "image_base64": base64.encodebytes(read_image(sample_image)).decode(
                            "utf-8"
                        ),
                        "model_explainability": model_explainability,
                        "xai_parameters": xai_parameters,
                    }
                )
            ],
        }
    }
    with open(request_file_name, "w") as request_file:
        json.dump(request_json, request_file)
    resp = ml_client.online_endpoints.invoke(
        endpoint_name=online_endpoint_name,
        deployment_name=deployment.name,
        request_file=request_file_name,
    )
    predictions = json.loads(resp)

    # Visualize Explanations
    from io import BytesIO

    def base64_to_img(base64_img_str):
        base64_img = base64_img_str.encode("utf-8")
        decoded_img = base64.b64decode(base64_img)
        return BytesIO(decoded_img).getvalue()

    # visualize explanations of the first image against one of the classes
    img_bytes = base64_to_img(predictions[0]["visualizations"][0])
    image = Image.open(BytesIO(img_bytes))
    plt.imshow(image)
    plt.close("all")

    # Delete the deployment and endopoint
    ml_client.online_endpoints.begin_delete(name=online_endpoint_name).wait()

    return {"jobs": submitted, "best_child_run_id": best_child_run_id, "best_run_metrics": best_run_metrics,
            "data_path": uri_folder_data_asset.path, "model_id": registered_model.id,
            "endpoint_name": online_endpoint_name, "traffic": dict(endpoint.traffic),
            "prediction": prediction, "labels_above_threshold": shown, "explanation": predictions[0],
            "explanation_image_size": image.size, "compute_name": compute_name,
            "annotations": [json.loads(line) for line in json_lines]}
