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

"""Google's low-level (gapic) samples for what follows training: read, evaluate, export, tear down.

Copied to run on the fake, as vertex_gapic_samples.py is. Sources, each read at the commit named:

- googleapis/python-aiplatform @ 3a489030bee3c4cd2305bd2ac6aa7ec49a6b7051, `samples/snippets/`
  `model_service/get_model_sample.py`, `model_service/get_model_evaluation_image_classification_sample.py`,
  `model_service/list_model_evaluation_slices_sample.py`, `model_service/get_model_evaluation_slice_sample.py`,
  `model_service/export_model_sample.py`, `model_service/delete_model_sample.py`,
  `pipeline_service/get_training_pipeline_sample.py`, `pipeline_service/cancel_training_pipeline_sample.py`,
  `pipeline_service/delete_training_pipeline_sample.py`, `endpoint_service/delete_endpoint_sample.py`,
  `dataset_service/delete_dataset_sample.py`.
- `undeploy_model_sample.py`: today's googleapis/python-aiplatform has no Python undeploy sample in
  `samples/snippets/`; this is the one it published earlier as `samples/snippets/undeploy_model_sample.py`
  (region tag aiplatform_v1beta1_undeploy_model_sample), read from the fork dizcology/python-aiplatform
  @ b2f1ad716d0c887f9ee2cb8311ef1743bb3c9297. It calls the v1beta1 surface.

The fake's URL goes in through each sample's own `api_endpoint` argument. The one edit: every
client is built with `**OFFLINE`, because the samples rely on application-default credentials
and gRPC, and the fake speaks REST to anonymous callers.
"""
# ruff: noqa  (Google's code, kept as published)
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
from google.cloud import aiplatform_v1beta1

OFFLINE = {"credentials": AnonymousCredentials(), "transport": "rest"}


# [START aiplatform_get_model_sample]
def get_model_sample(
    project: str,
    model_id: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.ModelServiceClient(client_options=client_options, **OFFLINE)
  name = client.model_path(project=project, location=location, model=model_id)
  response = client.get_model(name=name)
  print("response:", response)


# [END aiplatform_get_model_sample]


# [START aiplatform_get_model_evaluation_image_classification_sample]
def get_model_evaluation_image_classification_sample(
    project: str,
    model_id: str,
    evaluation_id: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
):
  """
    To obtain evaluation_id run the following commands where LOCATION
    is the region where the model is stored, PROJECT is the project ID,
    and MODEL_ID is the ID of your model.

    model_client = aiplatform.gapic.ModelServiceClient(
        client_options={
            'api_endpoint':'LOCATION-aiplatform.googleapis.com'
            }
        )
    evaluations =
    model_client.list_model_evaluations(parent='projects/PROJECT/locations/LOCATION/models/MODEL_ID')
    print("evaluations:", evaluations)
    """
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.ModelServiceClient(client_options=client_options, **OFFLINE)
  name = client.model_evaluation_path(
      project=project,
      location=location,
      model=model_id,
      evaluation=evaluation_id)
  response = client.get_model_evaluation(name=name)
  print("response:", response)


# [END aiplatform_get_model_evaluation_image_classification_sample]


# [START aiplatform_list_model_evaluation_slices_sample]
def list_model_evaluation_slices_sample(
    project: str,
    model_id: str,
    evaluation_id: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
):
  """
    To obtain evaluation_id run the following commands where LOCATION
    is the region where the model is stored, PROJECT is the project ID,
    and MODEL_ID is the ID of your model.

    model_client = aiplatform.gapic.ModelServiceClient(
        client_options={
            'api_endpoint':'LOCATION-aiplatform.googleapis.com'
            }
        )
    evaluations =
    model_client.list_model_evaluations(parent='projects/PROJECT/locations/LOCATION/models/MODEL_ID')
    print("evaluations:", evaluations)
    """
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.ModelServiceClient(client_options=client_options, **OFFLINE)
  parent = client.model_evaluation_path(
      project=project,
      location=location,
      model=model_id,
      evaluation=evaluation_id)
  response = client.list_model_evaluation_slices(parent=parent)
  for model_evaluation_slice in response:
    print("model_evaluation_slice:", model_evaluation_slice)


# [END aiplatform_list_model_evaluation_slices_sample]


# [START aiplatform_get_model_evaluation_slice_sample]
def get_model_evaluation_slice_sample(
    project: str,
    model_id: str,
    evaluation_id: str,
    slice_id: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
):
  """
    To obtain evaluation_id run the following commands where LOCATION
    is the region where the model is stored, PROJECT is the project ID,
    and MODEL_ID is the ID of your model.

    model_client = aiplatform.gapic.ModelServiceClient(
        client_options={
            'api_endpoint':'LOCATION-aiplatform.googleapis.com'
            }
        )
    evaluations =
    model_client.list_model_evaluations(parent='projects/PROJECT/locations/LOCATION/models/MODEL_ID')
    print("evaluations:", evaluations)
    """
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.ModelServiceClient(client_options=client_options, **OFFLINE)
  name = client.model_evaluation_slice_path(
      project=project,
      location=location,
      model=model_id,
      evaluation=evaluation_id,
      slice=slice_id,
  )
  response = client.get_model_evaluation_slice(name=name)
  print("response:", response)


# [END aiplatform_get_model_evaluation_slice_sample]


# [START aiplatform_export_model_sample]
def export_model_sample(
    project: str,
    model_id: str,
    gcs_destination_output_uri_prefix: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
    timeout: int = 300,
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.ModelServiceClient(client_options=client_options, **OFFLINE)
  output_config = {
      "artifact_destination": {
          "output_uri_prefix": gcs_destination_output_uri_prefix
      },
      # For information about export formats: https://cloud.google.com/ai-platform-unified/docs/export/export-edge-model#aiplatform_export_model_sample-drest
      "export_format_id": "tf-saved-model",
  }
  name = client.model_path(project=project, location=location, model=model_id)
  response = client.export_model(name=name, output_config=output_config)
  print("Long running operation:", response.operation.name)
  print("output_info:", response.metadata.output_info)
  export_model_response = response.result(timeout=timeout)
  print("export_model_response:", export_model_response)


# [END aiplatform_export_model_sample]


# [START aiplatform_get_training_pipeline_sample]
def get_training_pipeline_sample(
    project: str,
    training_pipeline_id: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.PipelineServiceClient(client_options=client_options, **OFFLINE)
  name = client.training_pipeline_path(
      project=project,
      location=location,
      training_pipeline=training_pipeline_id)
  response = client.get_training_pipeline(name=name)
  print("response:", response)


# [END aiplatform_get_training_pipeline_sample]


# [START aiplatform_cancel_training_pipeline_sample]
def cancel_training_pipeline_sample(
    project: str,
    training_pipeline_id: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.PipelineServiceClient(client_options=client_options, **OFFLINE)
  name = client.training_pipeline_path(
      project=project,
      location=location,
      training_pipeline=training_pipeline_id)
  response = client.cancel_training_pipeline(name=name)
  print("response:", response)


# [END aiplatform_cancel_training_pipeline_sample]


# [START aiplatform_delete_training_pipeline_sample]
def delete_training_pipeline_sample(
    project: str,
    training_pipeline_id: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
    timeout: int = 300,
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.PipelineServiceClient(client_options=client_options, **OFFLINE)
  name = client.training_pipeline_path(
      project=project,
      location=location,
      training_pipeline=training_pipeline_id)
  response = client.delete_training_pipeline(name=name)
  print("Long running operation:", response.operation.name)
  delete_training_pipeline_response = response.result(timeout=timeout)
  print("delete_training_pipeline_response:", delete_training_pipeline_response)


# [END aiplatform_delete_training_pipeline_sample]


# [START aiplatform_v1beta1_undeploy_model_sample]
def undeploy_model_sample(
    project: str,
    endpoint_id: str,
    deployed_model_id: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
    timeout: int = 300,
):
    # The AI Platform services require regional API endpoints.
    client_options = {"api_endpoint": api_endpoint}
    # Initialize client that will be used to create and send requests.
    # This client only needs to be created once, and can be reused for multiple requests.
    client = aiplatform_v1beta1.EndpointServiceClient(client_options=client_options, **OFFLINE)
    # If after the undeployment there is at least one deployed model remaining in the endpoint, traffic_split should be set to a mapping from remaining deployed models' ids to integer percentages that sum to 100.
    traffic_split = {}
    endpoint = client.endpoint_path(
        project=project, location=location, endpoint=endpoint_id
    )
    response = client.undeploy_model(
        endpoint=endpoint,
        deployed_model_id=deployed_model_id,
        traffic_split=traffic_split,
    )
    print("Long running operation:", response.operation.name)
    undeploy_model_response = response.result(timeout=timeout)
    print("undeploy_model_response:", undeploy_model_response)


# [END aiplatform_v1beta1_undeploy_model_sample]


# [START aiplatform_delete_endpoint_sample]
def delete_endpoint_sample(
    project: str,
    endpoint_id: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
    timeout: int = 300,
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.EndpointServiceClient(client_options=client_options, **OFFLINE)
  name = client.endpoint_path(
      project=project, location=location, endpoint=endpoint_id)
  response = client.delete_endpoint(name=name)
  print("Long running operation:", response.operation.name)
  delete_endpoint_response = response.result(timeout=timeout)
  print("delete_endpoint_response:", delete_endpoint_response)


# [END aiplatform_delete_endpoint_sample]


# [START aiplatform_delete_model_sample]
def delete_model_sample(
    project: str,
    model_id: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
    timeout: int = 300,
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.ModelServiceClient(client_options=client_options, **OFFLINE)
  name = client.model_path(project=project, location=location, model=model_id)
  response = client.delete_model(name=name)
  print("Long running operation:", response.operation.name)
  delete_model_response = response.result(timeout=timeout)
  print("delete_model_response:", delete_model_response)


# [END aiplatform_delete_model_sample]


# [START aiplatform_delete_dataset_sample]
def delete_dataset_sample(
    project: str,
    dataset_id: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
    timeout: int = 300,
):
  # The AI Platform services require regional API endpoints.
  client_options = {"api_endpoint": api_endpoint}
  # Initialize client that will be used to create and send requests.
  # This client only needs to be created once, and can be reused for multiple requests.
  client = aiplatform.gapic.DatasetServiceClient(client_options=client_options, **OFFLINE)
  name = client.dataset_path(
      project=project, location=location, dataset=dataset_id)
  response = client.delete_dataset(name=name)
  print("Long running operation:", response.operation.name)
  delete_dataset_response = response.result(timeout=timeout)
  print("delete_dataset_response:", delete_dataset_response)


# [END aiplatform_delete_dataset_sample]
