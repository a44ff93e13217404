# Copyright 2021 Google LLC
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

"""Google's high-level SDK samples for AutoML image classification, copied to run on the fake.

From googleapis/python-aiplatform `samples/model-builder/` (the `aiplatform_sdk_*` snippets of
the Vertex AI docs). The bodies are unchanged: each sample's own
`aiplatform.init(project=..., location=...)` keeps the endpoint, transport and credentials of
an earlier `aiplatform.init(**fake.init_kwargs())`, because init only overwrites what it is given.
The one edit: predict_image_classification_sample.py imports tensorflow without using it, and
that import is left out.

The Model Registry samples at the end come from `samples/model-builder/model_registry/`:
`get_model_version_info_sample.py` (@ 27a4f8f6ec80bf65ad2e21f3cfd5179a51279d85),
`list_model_versions_with_model_registry_sample.py` (@ 054c94a35f16ef0047d64ff8c0e9e05319129fc1; its
function is named list_model_versions_sample) and `delete_model_sample.py`
(@ 56fa26cbbd4942edc35044504bc39bdbff2f2077).
"""
# ruff: noqa  (Google's code, kept as published)
import base64
from typing import Dict, List, Optional, Sequence, Tuple, Union

from google.cloud import aiplatform


#  [START aiplatform_sdk_create_and_import_dataset_image_sample]
def create_and_import_dataset_image_sample(
    project: str,
    location: str,
    display_name: str,
    src_uris: Union[str, List[str]],
    sync: bool = True,
):
    aiplatform.init(project=project, location=location)

    ds = aiplatform.ImageDataset.create(
        display_name=display_name,
        gcs_source=src_uris,
        import_schema_uri=aiplatform.schema.dataset.ioformat.image.single_label_classification,
        sync=sync,
    )

    ds.wait()

    print(ds.display_name)
    print(ds.resource_name)
    return ds


#  [END aiplatform_sdk_create_and_import_dataset_image_sample]


#  [START aiplatform_sdk_create_training_pipeline_image_classification_sample]
def create_training_pipeline_image_classification_sample(
    project: str,
    location: str,
    display_name: str,
    dataset_id: str,
    model_display_name: Optional[str] = None,
    model_type: str = "CLOUD",
    multi_label: bool = False,
    training_fraction_split: float = 0.8,
    validation_fraction_split: float = 0.1,
    test_fraction_split: float = 0.1,
    budget_milli_node_hours: int = 8000,
    disable_early_stopping: bool = False,
    sync: bool = True,
):
    aiplatform.init(project=project, location=location)

    job = aiplatform.AutoMLImageTrainingJob(
        display_name=display_name,
        model_type=model_type,
        prediction_type="classification",
        multi_label=multi_label,
    )

    my_image_ds = aiplatform.ImageDataset(dataset_id)

    model = job.run(
        dataset=my_image_ds,
        model_display_name=model_display_name,
        training_fraction_split=training_fraction_split,
        validation_fraction_split=validation_fraction_split,
        test_fraction_split=test_fraction_split,
        budget_milli_node_hours=budget_milli_node_hours,
        disable_early_stopping=disable_early_stopping,
        sync=sync,
    )

    model.wait()

    print(model.display_name)
    print(model.resource_name)
    print(model.uri)
    return model


#  [END aiplatform_sdk_create_training_pipeline_image_classification_sample]


#  [START aiplatform_sdk_create_endpoint_sample]
def create_endpoint_sample(
    project: str,
    display_name: str,
    location: str,
):
  aiplatform.init(project=project, location=location)

  endpoint = aiplatform.Endpoint.create(
      display_name=display_name,
      project=project,
      location=location,
  )

  print(endpoint.display_name)
  print(endpoint.resource_name)
  return endpoint


#  [END aiplatform_sdk_create_endpoint_sample]


#  [START aiplatform_sdk_deploy_model_with_automatic_resources_sample]
def deploy_model_with_automatic_resources_sample(
    project,
    location,
    model_name: str,
    endpoint: Optional[aiplatform.Endpoint] = None,
    deployed_model_display_name: Optional[str] = None,
    traffic_percentage: Optional[int] = 0,
    traffic_split: Optional[Dict[str, int]] = None,
    min_replica_count: int = 1,
    max_replica_count: int = 1,
    metadata: Optional[Sequence[Tuple[str, str]]] = (),
    sync: bool = True,
):
    """
        model_name: A fully-qualified model resource name or model ID.
              Example: "projects/123/locations/us-central1/models/456" or
              "456" when project and location are initialized or passed.
    """

    aiplatform.init(project=project, location=location)

    model = aiplatform.Model(model_name=model_name)

    model.deploy(
        endpoint=endpoint,
        deployed_model_display_name=deployed_model_display_name,
        traffic_percentage=traffic_percentage,
        traffic_split=traffic_split,
        min_replica_count=min_replica_count,
        max_replica_count=max_replica_count,
        metadata=metadata,
        sync=sync,
    )

    model.wait()

    print(model.display_name)
    print(model.resource_name)
    return model


#  [END aiplatform_sdk_deploy_model_with_automatic_resources_sample]


#  [START aiplatform_sdk_predict_image_classification_sample]
def predict_image_classification_sample(
    project: str,
    location: str,
    endpoint_name: str,
    images: List,
):
    '''
    Args
        project: Your project ID or project number.
        location: Region where Endpoint is located. For example, 'us-central1'.
        endpoint_name: A fully qualified endpoint name or endpoint ID. Example: "projects/123/locations/us-central1/endpoints/456" or
               "456" when project and location are initialized or passed.
        images: A list of one or more images to return a prediction for.
    '''
    aiplatform.init(project=project, location=location)

    endpoint = aiplatform.Endpoint(endpoint_name)

    instances = []
    for image in images:
        with open(image, "rb") as f:
            content = f.read()
        instances.append({"content": base64.b64encode(content).decode("utf-8")})

    response = endpoint.predict(instances=instances)

    for prediction_ in response.predictions:
        print(prediction_)


#  [END aiplatform_sdk_predict_image_classification_sample]


#  [START aiplatform_sdk_create_batch_prediction_job_sample]
def create_batch_prediction_job_sample(
    project: str,
    location: str,
    model_resource_name: str,
    job_display_name: str,
    gcs_source: Union[str, Sequence[str]],
    gcs_destination: str,
    sync: bool = True,
):
    aiplatform.init(project=project, location=location)

    my_model = aiplatform.Model(model_resource_name)

    batch_prediction_job = my_model.batch_predict(
        job_display_name=job_display_name,
        gcs_source=gcs_source,
        gcs_destination_prefix=gcs_destination,
        sync=sync,
    )

    batch_prediction_job.wait()

    print(batch_prediction_job.display_name)
    print(batch_prediction_job.resource_name)
    print(batch_prediction_job.state)
    return batch_prediction_job


#  [END aiplatform_sdk_create_batch_prediction_job_sample]


# [START aiplatform_model_registry_get_model_version_info_sample]

def get_model_version_info_sample(model_id: str, version_id: str, project: str, location: str):
    """
    Get model version info.
    Args:
        model_id: The ID of the model.
        version_id: The ID of the model version.
        project: The project name.
        location: The location name.
    Returns:
        The model version info.
    """

    # Initialize the client.
    aiplatform.init(project=project, location=location)

    # Initialize the model registry with the ID 'model_id'.The parent_name of create method can be also
    # 'projects/<your-project-id>/locations/<your-region>/models/<your-model-id>'
    model_registry = aiplatform.models.ModelRegistry(model=model_id)

    # Get model version info.
    model_version_info = model_registry.get_version_info(version=version_id)

    return model_version_info


# [END aiplatform_model_registry_get_model_version_info_sample]


# [START aiplatform_model_registry_list_model_versions_with_model_registry_sample]


def list_model_versions_sample(model_id: str, project: str, location: str):
    """
    List all model versions of a model.
    Args:
        model_id: The ID of the model to list. Parent resource name of the model is also accepted.
        project: The project.
        location: The location.
    Returns:
        versions: List of model versions.
    """
    # Initialize the client.
    aiplatform.init(project=project, location=location)

    # Initialize the model registry with the ID 'model_id'.The parent_name of create method can be also
    # 'projects/<your-project-id>/locations/<your-region>/models/<your-model-id>'
    model_registry = aiplatform.models.ModelRegistry(model=model_id)

    # List all model versions of the model.
    versions = model_registry.list_versions()

    return versions


# [END aiplatform_model_registry_list_model_versions_with_model_registry_sample]


# [START aiplatform_model_registry_delete_model_sample]


def delete_model_sample(model_id: str, project: str, location: str):
    """
    Delete a Model resource.
    Args:
        model_id: The ID of the model to delete. Parent resource name of the model is also accepted.
        project: The project.
        location: The region name.
    Returns
        None.
    """
    # Initialize the client.
    aiplatform.init(project=project, location=location)

    # Get the model with the ID 'model_id'. The parent_name of Model resource can be also
    # 'projects/<your-project-id>/locations/<your-region>/models/<your-model-id>'
    model = aiplatform.Model(model_name=model_id)

    # Delete the model.
    model.delete()


# [END aiplatform_model_registry_delete_model_sample]
