# ruff: noqa  -- vendor sample kept as published; lint would "fix" it away from the original
# Microsoft Learn, "Export a model programmatically" (Custom Vision, Python SDK): the article's
# code blocks in the order it shows them, kept as published so the fake is held to what real users
# run. Source: https://learn.microsoft.com/azure/ai-services/custom-vision-service/export-programmatically
# (MicrosoftDocs/azure-docs, articles/ai-services/custom-vision-service/export-programmatically.md,
# ms.date 01/22/2024; code in that repository is under the MIT licence, LICENSE-CODE).
# Only changed: the article's fragments carry no imports, so the five it needs are added at the top
# and a "# ## ..." comment marks each of its headings;
# endpoint, key, project id and iteration id come from the environment instead of the
# "PASTE_YOUR_..." placeholders (VISION_TRAINING_* as the quickstart names them;
# CUSTOMVISION_PROJECT_ID / CUSTOMVISION_ITERATION_ID). export.zip lands in the working directory.
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from msrest.authentication import ApiKeyCredentials
import os
import time
import requests

# ## Create a training client
ENDPOINT = os.environ["VISION_TRAINING_ENDPOINT"]
training_key = os.environ["VISION_TRAINING_KEY"]

credentials = ApiKeyCredentials(in_headers={"Training-key": training_key})
trainer = CustomVisionTrainingClient(ENDPOINT, credentials)

# ## Call the export method
project_id = os.environ["CUSTOMVISION_PROJECT_ID"]
iteration_id = os.environ["CUSTOMVISION_ITERATION_ID"]
platform = "ONNX"
flavor = "ONNX10"
export = trainer.export_iteration(project_id, iteration_id, platform, flavor, raw=False)

# ## Download the exported model
while (export.status == "Exporting"):
    print ("Waiting 10 seconds...")
    time.sleep(10)
    exports = trainer.get_exports(project_id, iteration_id)
    # Locate the export for this iteration and check its status  
    for e in exports:
        if e.platform == export.platform and e.flavor == export.flavor:
            export = e
            break
    print("Export status is: ", export.status)

if export.status == "Done":
    # Success, now we can download it
    export_file = requests.get(export.download_uri)
    with open("export.zip", "wb") as file:
        file.write(export_file.content)
