# Copyright 2020 Google LLC
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     https://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Google's low-level (gapic) samples for AutoML image classification, copied to run on the fake.

From googleapis/python-aiplatform `samples/snippets/{dataset,pipeline,endpoint,prediction}_service/`.
The fake's URL goes in through each sample's own `api_endpoint` argument. The one edit: every
client is built with `**OFFLINE`, because the samples rely on application-default credentials
and gRPC, and the fake speaks REST to anonymous callers.
"""
# ruff: noqa  (Google's code, kept as published)
import base64

from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
from google.cloud.aiplatform.gapic.schema import predict, trainingjob

OFFLINE = {"credentials": AnonymousCredentials(), "transport": "rest"}


# [START aiplatform_create_dataset_image_sample]
def create_dataset_image_sample(
    project: str,
    display_name: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
    timeout: int = 300,
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.DatasetServiceClient(client_options=client_options, **OFFLINE)
  dataset = {
      "display_name":
          display_name,
      "metadata_schema_uri":
          "gs://google-cloud-aiplatform/schema/dataset/metadata/image_1.0.0.yaml",
  }
  parent = f"projects/{project}/locations/{location}"
  response = client.create_dataset(parent=parent, dataset=dataset)
  print("Long running operation:", response.operation.name)
  create_dataset_response = response.result(timeout=timeout)
  print("create_dataset_response:", create_dataset_response)


# [END aiplatform_create_dataset_image_sample]


# [START aiplatform_import_data_image_classification_single_label_sample]
def import_data_image_classification_single_label_sample(
    project: str,
    dataset_id: str,
    gcs_source_uri: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
    timeout: int = 1800,
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.DatasetServiceClient(client_options=client_options, **OFFLINE)
  import_configs = [{
      "gcs_source": {
          "uris": [gcs_source_uri]
      },
      "import_schema_uri":
          "gs://google-cloud-aiplatform/schema/dataset/ioformat/image_classification_single_label_io_format_1.0.0.yaml",
  }]
  name = client.dataset_path(
      project=project, location=location, dataset=dataset_id)
  response = client.import_data(name=name, import_configs=import_configs)
  print("Long running operation:", response.operation.name)
  import_data_response = response.result(timeout=timeout)
  print("import_data_response:", import_data_response)


# [END aiplatform_import_data_image_classification_single_label_sample]


# [START aiplatform_create_training_pipeline_image_classification_sample]
def create_training_pipeline_image_classification_sample(
    project: str,
    display_name: str,
    dataset_id: str,
    model_display_name: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.PipelineServiceClient(client_options=client_options, **OFFLINE)
  training_task_inputs = trainingjob.definition.AutoMlImageClassificationInputs(
      multi_label=True,
      model_type="CLOUD",
      budget_milli_node_hours=8000,
      disable_early_stopping=False,
  ).to_value()

  training_pipeline = {
      "display_name":
          display_name,
      "training_task_definition":
          "gs://google-cloud-aiplatform/schema/trainingjob/definition/automl_image_classification_1.0.0.yaml",
      "training_task_inputs":
          training_task_inputs,
      "input_data_config": {
          "dataset_id": dataset_id
      },
      "model_to_upload": {
          "display_name": model_display_name
      },
  }
  parent = f"projects/{project}/locations/{location}"
  response = client.create_training_pipeline(
      parent=parent, training_pipeline=training_pipeline)
  print("response:", response)


# [END aiplatform_create_training_pipeline_image_classification_sample]


# [START aiplatform_create_endpoint_sample]
def create_endpoint_sample(
    project: str,
    display_name: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
    timeout: int = 300,
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.EndpointServiceClient(client_options=client_options, **OFFLINE)
  endpoint = {"display_name": display_name}
  parent = f"projects/{project}/locations/{location}"
  response = client.create_endpoint(parent=parent, endpoint=endpoint)
  print("Long running operation:", response.operation.name)
  create_endpoint_response = response.result(timeout=timeout)
  print("create_endpoint_response:", create_endpoint_response)


# [END aiplatform_create_endpoint_sample]


# [START aiplatform_deploy_model_sample]
def deploy_model_sample(
    project: str,
    endpoint_id: str,
    model_name: str,
    deployed_model_display_name: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
    timeout: int = 7200,
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.EndpointServiceClient(client_options=client_options, **OFFLINE)
  deployed_model = {
      # format: 'projects/{project}/locations/{location}/models/{model}'
      "model": model_name,
      "display_name": deployed_model_display_name,
      # AutoML Vision models require `automatic_resources` field
      # Other model types may require `dedicated_resources` field instead
      "automatic_resources": {
          "min_replica_count": 1,
          "max_replica_count": 1
      },
  }
  # key '0' assigns traffic for the newly deployed model
  # Traffic percentage values must add up to 100
  # Leave dictionary empty if endpoint should not accept any traffic
  traffic_split = {"0": 100}
  endpoint = client.endpoint_path(
      project=project, location=location, endpoint=endpoint_id)
  response = client.deploy_model(
      endpoint=endpoint,
      deployed_model=deployed_model,
      traffic_split=traffic_split)
  print("Long running operation:", response.operation.name)
  deploy_model_response = response.result(timeout=timeout)
  print("deploy_model_response:", deploy_model_response)


# [END aiplatform_deploy_model_sample]


# [START aiplatform_predict_image_classification_sample]
def predict_image_classification_sample(
    project: str,
    endpoint_id: str,
    filename: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.PredictionServiceClient(
      client_options=client_options, **OFFLINE)
  with open(filename, "rb") as f:
    file_content = f.read()

  # The format of each instance should conform to the deployed model's prediction input schema.
  encoded_content = base64.b64encode(file_content).decode("utf-8")
  instance = predict.instance.ImageClassificationPredictionInstance(
      content=encoded_content,).to_value()
  instances = [instance]
  # See gs://google-cloud-aiplatform/schema/predict/params/image_classification_1.0.0.yaml for the format of the parameters.
  parameters = predict.params.ImageClassificationPredictionParams(
      confidence_threshold=0.5,
      max_predictions=5,
  ).to_value()
  endpoint = client.endpoint_path(
      project=project, location=location, endpoint=endpoint_id)
  response = client.predict(
      endpoint=endpoint, instances=instances, parameters=parameters)
  print("response")
  print(" deployed_model_id:", response.deployed_model_id)
  # See gs://google-cloud-aiplatform/schema/predict/prediction/image_classification_1.0.0.yaml for the format of the predictions.
  predictions = response.predictions
  for prediction in predictions:
    print(" prediction:", dict(prediction))


# [END aiplatform_predict_image_classification_sample]
